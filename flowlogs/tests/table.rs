//! Flow table behaviour: keys, initiator, states, timeouts, reports, ends.

mod common;

use common::*;
use netwatch_flowlogs::table::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use netwatch_flowlogs::{Counters, EndReason, FlowRecord, FlowRecordKind, FlowState, FlowTable, FlowTableConfig, PacketInfo};
use proptest::prelude::*;

fn table() -> FlowTable<u32> {
    FlowTable::new(FlowTableConfig::default()).unwrap()
}

fn feed(t: &mut FlowTable<u32>, pkts: &[PacketInfo]) -> Vec<FlowRecord<u32>> {
    let mut out = Vec::new();
    let mut next = 0;
    for p in pkts {
        t.observe(p, |_, _| {
            next += 1;
            next
        });
        out.extend(t.drain_records());
    }
    out
}

fn ends(recs: &[FlowRecord<u32>]) -> Vec<&FlowRecord<u32>> {
    recs.iter().filter(|r| matches!(r.kind, FlowRecordKind::End(_))).collect()
}

#[test]
fn tcp_handshake_data_and_fin_make_one_flow() {
    let c = "10.0.0.4";
    let s = "52.239.184.180";
    let pkts = [
        tcp(0.0, c, 50000, s, 443, SYN, 60),
        tcp(0.01, s, 443, c, 50000, SYN | ACK, 60),
        tcp(0.02, c, 50000, s, 443, ACK, 52),
        tcp(0.03, c, 50000, s, 443, PSH | ACK, 552),
        tcp(0.05, s, 443, c, 50000, PSH | ACK, 1452),
        tcp(0.06, c, 50000, s, 443, FIN | ACK, 52),
        tcp(0.07, s, 443, c, 50000, FIN | ACK, 52),
        tcp(0.08, c, 50000, s, 443, ACK, 52),
    ];
    let mut t = table();
    let mut recs = feed(&mut t, &pkts);
    assert_eq!(t.len(), 1, "both directions share one entry");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].kind, FlowRecordKind::Begin);
    assert_eq!(recs[0].interval_forward.packets, 0);
    // The close lingers 10 s (absorbing the last ACK), then ends.
    t.advance(5 * S);
    assert!(t.pending_records().is_empty());
    t.advance(11 * S);
    recs.extend(t.drain_records());
    assert!(t.is_empty());
    let end = ends(&recs)[0];
    assert_eq!(end.kind, FlowRecordKind::End(EndReason::TcpFin));
    assert_eq!(end.state, FlowState::Ended);
    assert_eq!(end.tuple.src, ip(c));
    assert_eq!(end.tuple.dst_port, 443);
    assert_eq!((end.forward.packets, end.forward.bytes), (5, 60 + 52 + 552 + 52 + 52));
    assert_eq!((end.reverse.packets, end.reverse.bytes), (3, 60 + 1452 + 52));
    assert_eq!(end.forward.tcp_flags, SYN | ACK | PSH | FIN);
    assert_eq!(end.reverse.tcp_flags, SYN | ACK | PSH | FIN);
    assert_eq!(end.interval_forward.packets, 5, "E carries everything when there was no C");
    assert_eq!(end.first_ns, 0);
    assert_eq!(end.last_ns, 80_000_000);
    assert_eq!(end.user, 1);
}

#[test]
fn syn_ack_seen_first_makes_its_receiver_the_initiator() {
    let mut t = table();
    let o = t.observe(&tcp(1.0, "52.1.1.1", 443, "10.0.0.4", 50000, SYN | ACK, 60), |_, _| 7);
    assert!(o.is_new);
    assert!(!o.from_initiator);
    assert_eq!(o.tuple.src, ip("10.0.0.4"));
    assert_eq!(o.tuple.src_port, 50000);
    assert_eq!(o.state, FlowState::Established);
    let o = t.observe(&tcp(1.1, "10.0.0.4", 50000, "52.1.1.1", 443, ACK, 52), |_, _| 8);
    assert!(!o.is_new);
    assert!(o.from_initiator);
    assert_eq!(*o.user, 7);
}

/// A capture started on a host with connections open: a TCP flow's first
/// packet is the server's data (no SYN), a UDP flow's the server's answer.
/// The side with the service port is the responder, as the packets that
/// were not captured had it.
#[test]
fn a_flow_first_seen_mid_stream_is_initiated_from_its_dynamic_port() {
    let mut t = table();
    let o = t.observe(&tcp(1.0, "10.2.1.4", 22, "10.2.2.4", 50000, PSH | ACK, 100), |_, _| 1);
    assert!(!o.from_initiator);
    assert_eq!((o.tuple.src, o.tuple.src_port, o.tuple.dst_port), (ip("10.2.2.4"), 50000, 22));
    let o = t.observe(&udp(1.1, "8.8.8.8", 53, "10.0.0.5", 51000, 90), |_, _| 2);
    assert!(!o.from_initiator);
    assert_eq!((o.tuple.src, o.tuple.dst_port), (ip("10.0.0.5"), 53));
    // 8443 against a Linux client port, and a FIN first.
    let o = t.observe(&tcp(1.2, "10.0.0.9", 8443, "10.0.0.8", 35000, FIN | ACK, 52), |_, _| 3);
    assert_eq!((o.tuple.src, o.tuple.dst_port), (ip("10.0.0.8"), 8443));
    // Two client-range ports: the first sender stays the initiator.
    let o = t.observe(&udp(1.15, "10.0.0.6", 40000, "10.0.0.7", 50000, 90), |_, _| 6);
    assert!(o.from_initiator);
    assert_eq!(o.tuple.src, ip("10.0.0.6"));
    let o = t.observe(&tcp(1.3, "10.0.0.1", 40000, "10.0.0.2", 35000, ACK, 52), |_, _| 4);
    assert!(o.from_initiator);
    assert_eq!(o.tuple.src, ip("10.0.0.1"));
    // A client bound to a low port (NFS: 800 to 2049), TCP mid-stream and
    // UDP from its first datagram: its packets are the initiator's.
    let o = t.observe(&tcp(1.35, "10.2.1.4", 800, "10.2.2.4", 2049, PSH | ACK, 152), |_, _| 7);
    assert!(o.from_initiator);
    assert_eq!((o.tuple.src, o.tuple.dst_port), (ip("10.2.1.4"), 2049));
    let o = t.observe(&udp(1.36, "10.2.1.4", 801, "10.2.2.4", 2049, 152), |_, _| 8);
    assert!(o.from_initiator);
    assert_eq!((o.tuple.src, o.tuple.dst_port), (ip("10.2.1.4"), 2049));
    // A SYN decides whatever the ports: a client bound to a system port.
    let o = t.observe(&tcp(1.4, "10.0.0.3", 514, "10.0.0.4", 55000, SYN, 60), |_, _| 5);
    assert!(o.from_initiator);
    assert_eq!(o.tuple.src, ip("10.0.0.3"));
    // The initiator's own packets count as sent.
    let o = t.observe(&tcp(1.5, "10.2.2.4", 50000, "10.2.1.4", 22, ACK, 52), |_, _| 9);
    assert!(!o.is_new);
    assert!(o.from_initiator);
    assert_eq!(*o.user, 1);
}

#[test]
fn rst_ends_and_a_new_syn_reuses_the_tuple() {
    let mut t = table();
    let mut recs = feed(
        &mut t,
        &[
            tcp(0.0, "10.0.0.4", 40000, "10.0.0.5", 22, SYN, 60),
            tcp(0.1, "10.0.0.5", 22, "10.0.0.4", 40000, RST | ACK, 40),
            tcp(1.0, "10.0.0.4", 40000, "10.0.0.5", 22, SYN, 60),
        ],
    );
    assert_eq!(t.len(), 1);
    let e = ends(&recs);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].kind, FlowRecordKind::End(EndReason::Reused));
    assert_eq!(e[0].user, 1);
    t.finish();
    recs.extend(t.drain_records());
    let e = ends(&recs);
    assert_eq!(e[1].kind, FlowRecordKind::End(EndReason::Flushed));
    assert_eq!(e[1].user, 2);
    assert_eq!(e[1].forward.packets, 1);
}

#[test]
fn rst_ends_after_linger() {
    let mut t = table();
    let mut recs = feed(
        &mut t,
        &[
            tcp(0.0, "10.0.0.4", 40000, "10.0.0.5", 22, SYN, 60),
            tcp(0.1, "10.0.0.5", 22, "10.0.0.4", 40000, RST | ACK, 40),
        ],
    );
    t.advance(30 * S);
    recs.extend(t.drain_records());
    let e = ends(&recs);
    assert_eq!(e[0].kind, FlowRecordKind::End(EndReason::TcpRst));
    assert_eq!(e[0].at_ns, 100_000_000 + 10 * S);
}

#[test]
fn icmp_echo_request_and_reply_share_a_flow_per_identifier() {
    let mut t = table();
    feed(
        &mut t,
        &[
            icmp(0.0, "10.0.0.4", "8.8.8.8", 8, 1, 84),
            icmp(0.01, "8.8.8.8", "10.0.0.4", 0, 1, 84),
            icmp(1.0, "10.0.0.4", "8.8.8.8", 8, 1, 84),
            icmp(1.01, "8.8.8.8", "10.0.0.4", 0, 1, 84),
            icmp(2.0, "10.0.0.4", "8.8.8.8", 8, 2, 84),
        ],
    );
    assert_eq!(t.len(), 2);
    t.finish();
    let recs: Vec<_> = t.drain_records().collect();
    let e = ends(&recs);
    assert_eq!((e[0].forward.packets, e[0].reverse.packets), (2, 2));
    assert_eq!(e[0].state, FlowState::Established);
    assert_eq!((e[0].tuple.src_port, e[0].tuple.dst_port), (0, 0), "ICMP is portless in tuples");
    assert_eq!(e[0].icmp.map(|i| i.id), Some(1));
    assert_eq!((e[1].forward.packets, e[1].reverse.packets), (1, 0));
    assert_eq!(e[1].state, FlowState::Begin);
    // A reply seen first: the receiver pinged.
    let mut t = table();
    let o = t.observe(&icmp(0.0, "8.8.8.8", "10.0.0.4", 0, 9, 84), |_, _| 0);
    assert_eq!(o.tuple.src, ip("10.0.0.4"));
    // ... and the flow's ICMP fields are the initiator's: an echo request.
    t.finish();
    let recs: Vec<_> = t.drain_records().collect();
    assert_eq!(ends(&recs)[0].icmp.map(|i| (i.icmp_type, i.id)), Some((8, 9)));
}

/// Extended echo (RFC 8335, PROBE: ICMP 42/43, ICMPv6 160/161) pairs by
/// identifier like echo, a reply seen first included.
#[test]
fn icmp_extended_echo_request_and_reply_share_a_flow() {
    let mut t = table();
    let v6 = |ts: f64, src: &str, dst: &str, ty: u8, id: u16| PacketInfo {
        protocol: 58,
        ..icmp(ts, src, dst, ty, id, 72)
    };
    let pkts = [
        icmp(0.0, "10.0.0.4", "10.0.0.9", 42, 0x43, 84),
        icmp(0.01, "10.0.0.9", "10.0.0.4", 43, 0x43, 84),
        v6(0.02, "fd00::4", "fd00::9", 160, 7),
        v6(0.03, "fd00::9", "fd00::4", 161, 7),
        icmp(0.04, "10.0.0.9", "10.0.0.5", 43, 0x44, 84),
    ];
    feed(&mut t, &pkts);
    assert_eq!(t.len(), 3);
    t.finish();
    let recs: Vec<_> = t.drain_records().collect();
    let e = ends(&recs);
    for r in &e[..2] {
        assert_eq!((r.forward.packets, r.reverse.packets), (1, 1), "{r:?}");
        assert_eq!(r.state, FlowState::Established);
    }
    assert_eq!(e[2].tuple.src, ip("10.0.0.5"), "the reply's receiver asked");
    assert_eq!(e[2].icmp.map(|i| i.icmp_type), Some(42));
}

#[test]
fn other_protocols_ignore_ports() {
    let mut t = table();
    let mut gre = udp(0.0, "10.0.0.4", 1, "10.0.0.5", 2, 100);
    gre.protocol = 47;
    t.observe(&gre, |_, _| 0);
    gre.src_port = 9;
    gre.ts_ns = S;
    let o = t.observe(&gre, |_, _| 1);
    assert!(!o.is_new);
    assert_eq!((o.tuple.src_port, o.tuple.dst_port), (0, 0));
}

#[test]
fn idle_timeouts_per_protocol() {
    let mut t = table();
    feed(
        &mut t,
        &[
            udp(0.0, "10.0.0.4", 5353, "10.0.0.5", 53, 70),
            tcp(0.0, "10.0.0.4", 40000, "10.0.0.5", 80, SYN, 60),
        ],
    );
    t.advance(59 * S);
    assert_eq!(t.len(), 2);
    t.advance(61 * S);
    assert_eq!(t.len(), 1, "UDP idles out after 1 minute");
    let r: Vec<_> = t.drain_records().collect();
    assert_eq!(r[0].kind, FlowRecordKind::End(EndReason::IdleTimeout));
    assert_eq!(r[0].at_ns, 60 * S);
    t.advance(239 * S);
    assert_eq!(t.len(), 1);
    t.advance(241 * S);
    assert!(t.is_empty(), "TCP idles out after 4 minutes");
}

#[test]
fn activity_postpones_idle_expiry() {
    let mut t = table();
    for i in 0..10 {
        feed(&mut t, &[udp(f64::from(i) * 50.0, "10.0.0.4", 5000, "10.0.0.5", 53, 70)]);
    }
    assert_eq!(t.len(), 1);
    t.advance(450 * S + 60 * S);
    let r: Vec<_> = t.drain_records().collect();
    let e = ends(&r);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].forward.packets, 10);
}

#[test]
fn reports_every_five_minutes_and_intervals_sum_to_totals() {
    let mut t = table();
    let mut pkts = vec![tcp(0.0, "10.0.0.4", 40000, "10.0.0.5", 443, SYN, 60)];
    for i in 1..=48 {
        let ts = f64::from(i) * 15.0; // 12 minutes
        pkts.push(tcp(ts, "10.0.0.4", 40000, "10.0.0.5", 443, ACK, 100));
        pkts.push(tcp(ts + 0.5, "10.0.0.5", 443, "10.0.0.4", 40000, ACK, 1000));
    }
    let mut recs = feed(&mut t, &pkts);
    t.finish();
    recs.extend(t.drain_records());
    let kinds: Vec<_> = recs.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            FlowRecordKind::Begin,
            FlowRecordKind::Report,
            FlowRecordKind::Report,
            FlowRecordKind::End(EndReason::Flushed)
        ]
    );
    assert_eq!(recs[1].at_ns, 300 * S);
    assert_eq!(recs[2].at_ns, 600 * S);
    let fwd: u64 = recs.iter().map(|r| r.interval_forward.packets).sum();
    let rev_b: u64 = recs.iter().map(|r| r.interval_reverse.bytes).sum();
    let end = recs.last().unwrap();
    assert_eq!(fwd, end.forward.packets);
    assert_eq!(rev_b, end.reverse.bytes);
    assert_eq!(end.forward.packets, 49);
    // First report: SYN + 19 packets each way before t=300 (the packet at 300 s comes after the boundary).
    assert_eq!(recs[1].interval_forward.packets, 20);
    let at: Vec<i64> = recs.iter().map(|r| r.at_ns).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn active_timeout_and_eviction() {
    let cfg = FlowTableConfig {
        active_timeout_ns: Some(100 * S),
        max_flows: Some(2),
        ..FlowTableConfig::default()
    };
    let mut t: FlowTable<u32> = FlowTable::new(cfg).unwrap();
    let mut recs = feed(
        &mut t,
        &[
            udp(0.0, "10.0.0.4", 1, "10.0.0.5", 53, 70),
            udp(1.0, "10.0.0.4", 2, "10.0.0.5", 53, 70),
            udp(2.0, "10.0.0.4", 3, "10.0.0.5", 53, 70),
        ],
    );
    assert_eq!(t.len(), 2);
    assert_eq!(ends(&recs)[0].kind, FlowRecordKind::End(EndReason::Evicted));
    assert_eq!(ends(&recs)[0].tuple.src_port, 1);
    for i in 0..30 {
        recs.extend(feed(&mut t, &[udp(3.0 + f64::from(i) * 4.0, "10.0.0.4", 3, "10.0.0.5", 53, 70)]));
    }
    assert!(ends(&recs)
        .iter()
        .any(|r| r.kind == FlowRecordKind::End(EndReason::ActiveTimeout) && r.tuple.src_port == 3));
    assert!(FlowTable::<u32>::new(FlowTableConfig {
        udp_idle_ns: 0,
        ..FlowTableConfig::default()
    })
    .is_err());
}

/// An active timeout cuts the record, not the connection: the server's
/// packets after the cut stay the responder's, the user slot (the NSG
/// verdict) is not taken again, and the records add up to every packet.
#[test]
fn active_timeout_keeps_the_flow_its_initiator_and_verdict() {
    let cfg = FlowTableConfig {
        active_timeout_ns: Some(30 * S),
        ..FlowTableConfig::default()
    };
    let mut t: FlowTable<u32> = FlowTable::new(cfg).unwrap();
    let (client, server) = ("1.2.3.4", "10.1.1.4");
    let mut pkts = vec![
        tcp(0.0, client, 25, server, 443, SYN, 60),
        tcp(0.1, server, 443, client, 25, SYN | ACK, 60),
        tcp(0.2, client, 25, server, 443, ACK, 52),
    ];
    for i in 1..8 {
        let at = f64::from(i) * 10.0;
        pkts.push(tcp(at, server, 443, client, 25, PSH | ACK, 152));
        pkts.push(tcp(at + 0.1, client, 25, server, 443, ACK, 52));
    }
    let mut recs = feed(&mut t, &pkts);
    t.finish();
    recs.extend(t.drain_records());
    let ends = ends(&recs);
    assert!(ends.len() >= 3, "{ends:?}");
    assert!(ends[..ends.len() - 1]
        .iter()
        .all(|r| r.kind == FlowRecordKind::End(EndReason::ActiveTimeout)));
    for r in &ends {
        assert_eq!((r.tuple.src, r.tuple.src_port), (ip(client), 25), "the client stays the initiator");
        assert_eq!(r.user, 1, "evaluated once");
    }
    let packets: u64 = ends.iter().map(|r| r.forward.packets + r.reverse.packets).sum();
    assert_eq!(packets, pkts.len() as u64);
    // A flow that goes quiet after a cut still ends (a flow log writes its
    // `E`), in a record without packets, at its idle timeout, timed by its
    // last packet; whether it idles out or the capture ends.
    for idle_out in [true, false] {
        let mut t: FlowTable<u32> = FlowTable::new(cfg).unwrap();
        let mut recs = feed(
            &mut t,
            &[udp(0.0, client, 5000, server, 53, 70), udp(29.0, client, 5000, server, 53, 70)],
        );
        if idle_out {
            t.advance(1000 * S);
        } else {
            t.advance(40 * S);
            t.finish();
        }
        recs.extend(t.drain_records());
        let ends: Vec<_> = recs.iter().filter(|r| matches!(r.kind, FlowRecordKind::End(_))).collect();
        assert_eq!(ends.len(), 2, "{ends:?}");
        assert_eq!(ends[0].kind, FlowRecordKind::End(EndReason::ActiveTimeout));
        assert!(ends[0].has_packets());
        assert_eq!(ends[0].forward.packets, 2);
        let reason = if idle_out { EndReason::IdleTimeout } else { EndReason::Flushed };
        assert_eq!(ends[1].kind, FlowRecordKind::End(reason));
        assert!(!ends[1].has_packets(), "{:?}", ends[1]);
        assert_eq!(
            (ends[1].interval_forward, ends[1].interval_reverse),
            (Counters::default(), Counters::default())
        );
        assert_eq!((ends[1].first_ns, ends[1].last_ns), (29 * S, 29 * S));
        if idle_out {
            assert_eq!(ends[1].at_ns, 89 * S, "60 s after the last packet");
        }
    }
}

#[test]
fn memory_follows_live_flows() {
    let mut t = table();
    for i in 0..20_000u32 {
        let p = udp(f64::from(i) * 0.01, "10.0.0.4", (i % 60_000) as u16 + 1, "10.0.0.5", 53, 70);
        t.observe(&p, |_, _| 0);
        t.drain_records().for_each(drop);
        // Each flow idles out 60 s later: at 100 pkt/s at most ~6000 live.
        assert!(t.len() <= 6_001, "{} live at packet {i}", t.len());
    }
}

proptest! {
    /// Over random traffic, every flow's intervals (Begin/Report/End) sum
    /// to its totals, and every packet is counted exactly once.
    #[test]
    fn intervals_sum_to_totals(pkts in proptest::collection::vec((0u8..4, 0u8..4, 0u16..3, 0u8..3, 1u32..1500, 0u32..40_000), 1..300)) {
        let cfg = FlowTableConfig { report_interval_ns: Some(20 * S), ..FlowTableConfig::default() };
        let mut t: FlowTable<u64> = FlowTable::new(cfg).unwrap();
        let hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1"];
        let mut ts = 0i64;
        let mut recs = Vec::new();
        let mut next_id = 0u64;
        let mut total_pkts = 0u64;
        for (a, b, port, kind, len, gap_ms) in pkts {
            ts += i64::from(gap_ms) * 1_000_000;
            let (a, b) = (hosts[a as usize], hosts[b as usize]);
            let mut p = match kind {
                0 => tcp(0.0, a, 1000 + port, b, 80, [SYN, ACK, FIN | ACK, RST][(len % 4) as usize], len),
                1 => udp(0.0, a, 1000 + port, b, 53, len),
                _ => icmp(0.0, a, b, [8, 0][(len % 2) as usize], port, len),
            };
            if p.src.is_ipv4() != p.dst.is_ipv4() { continue; }
            p.ts_ns = ts;
            total_pkts += 1;
            t.observe(&p, |_, _| { next_id += 1; next_id });
            recs.extend(t.drain_records());
        }
        t.finish();
        recs.extend(t.drain_records());
        prop_assert!(t.is_empty());
        let mut sums: std::collections::HashMap<u64, (u64, u64, u64, u64)> = Default::default();
        let mut counted = 0;
        for r in &recs {
            let e = sums.entry(r.user).or_default();
            e.0 += r.interval_forward.packets;
            e.1 += r.interval_forward.bytes;
            e.2 += r.interval_reverse.packets;
            e.3 += r.interval_reverse.bytes;
            if let FlowRecordKind::End(_) = r.kind {
                prop_assert_eq!(*e, (r.forward.packets, r.forward.bytes, r.reverse.packets, r.reverse.bytes));
                counted += r.forward.packets + r.reverse.packets;
            }
        }
        prop_assert_eq!(counted, total_pkts);
        prop_assert_eq!(sums.len() as u64, next_id);
        prop_assert!(recs.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
    }
}

proptest! {
    /// `observe_batch` (any batch sizes) produces exactly the records that
    /// `observe` packet by packet does, over traffic with thousands of
    /// flows (the index grows), short timeouts and a flow limit (flows are
    /// removed and their slots reused mid-batch).
    #[test]
    fn batches_equal_single_packets(
        pkts in proptest::collection::vec((0u16..3000, 0u16..4, 0u8..4, 1u32..1500, 0u32..30), 1..4000),
        cuts in proptest::collection::vec(1usize..600, 1..40),
        max_flows in proptest::option::of(50usize..2000),
    ) {
        let cfg = FlowTableConfig {
            udp_idle_ns: S,
            icmp_idle_ns: S,
            tcp_idle_ns: 2 * S,
            tcp_closed_linger_ns: S / 2,
            report_interval_ns: Some(3 * S),
            max_flows,
            ..FlowTableConfig::default()
        };
        let mut ts = 0i64;
        let traffic: Vec<PacketInfo> = pkts
            .iter()
            .map(|&(host, port, kind, len, gap_ms)| {
                ts += i64::from(gap_ms) * 1_000_000;
                let a = format!("10.{}.{}.1", host >> 8, host & 0xff);
                let mut p = match kind {
                    0 => tcp(0.0, &a, 1000 + port, "192.0.2.1", 443, [SYN, SYN | ACK, ACK, FIN | ACK][(len % 4) as usize], len),
                    1 => tcp(0.0, "192.0.2.1", 443, &a, 1000 + port, [ACK, RST, PSH | ACK, SYN][(len % 4) as usize], len),
                    2 => udp(0.0, &a, 1000 + port, "192.0.2.53", 53, len),
                    _ => icmp(0.0, &a, "192.0.2.1", [8, 0][(len % 2) as usize], port, len),
                };
                p.ts_ns = ts;
                p
            })
            .collect();

        let mut single: FlowTable<u64> = FlowTable::new(cfg).unwrap();
        let mut expected = Vec::new();
        let mut id = 0u64;
        for p in &traffic {
            single.observe(p, |_, _| { id += 1; id });
            expected.extend(single.drain_records());
        }
        single.finish();
        expected.extend(single.drain_records());

        let mut batched: FlowTable<u64> = FlowTable::new(cfg).unwrap();
        let mut got = Vec::new();
        let mut id = 0u64;
        let mut rest = &traffic[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            let (batch, tail) = rest.split_at(n);
            batched.observe_batch(batch, |_, _| { id += 1; id }, |r| got.push(r));
            rest = tail;
        }
        batched.finish();
        got.extend(batched.drain_records());
        prop_assert_eq!(got.len(), expected.len());
        prop_assert!(got == expected, "records differ");
    }
}

/// Packet times that step back (captures merged out of order, a clock
/// step): a flow started after the step lives by the table's clock, so its
/// next packets a moment later still find it (its deadline was in the
/// clock's past: each packet made a new one-packet flow, and the reply was
/// judged as a flow of its own).
#[test]
fn a_step_back_in_time_does_not_split_the_flows_after_it() {
    let mut t = table();
    let (a, b) = ("1.2.3.4", "10.1.1.4");
    let mut recs = feed(
        &mut t,
        &[
            udp(100.0, "10.0.2.4", 1, b, 2, 40),
            udp(30.0, a, 5000, b, 53, 40),
            udp(30.01, b, 53, a, 5000, 40),
            udp(30.02, a, 5000, b, 53, 40),
        ],
    );
    t.finish();
    recs.extend(t.drain_records());
    let e: Vec<_> = ends(&recs).into_iter().filter(|r| r.tuple.src_port == 5000).collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].forward.packets, e[0].reverse.packets), (2, 1));
    assert_eq!(
        (e[0].first_ns, e[0].last_ns),
        (30 * S, 30 * S + 20_000_000),
        "reported times stay the packets'"
    );
}

/// The end of the input ends the live flows in order of first packet,
/// whatever slots they took: a slot freed by an ended flow and taken by a
/// later one, and a packet time stepping back, put the table's slots out of
/// that order.
#[test]
fn finish_ends_flows_in_order_of_first_packet() {
    let mut t = table();
    let mut recs = feed(
        &mut t,
        &[
            udp(1.0, "10.0.0.1", 1000, "10.0.0.9", 53, 80),
            udp(2.0, "10.0.0.2", 1000, "10.0.0.9", 53, 80),
            udp(50.0, "10.0.0.2", 1000, "10.0.0.9", 53, 80),
        ],
    );
    // The first flow idles out (1 min UDP): its slot is free again.
    t.advance(61 * S + S / 2);
    recs.extend(t.drain_records());
    assert_eq!(ends(&recs).len(), 1, "{recs:?}");
    recs.extend(feed(
        &mut t,
        &[
            udp(62.5, "10.0.0.3", 1000, "10.0.0.9", 53, 80),
            // A step back in time: an earlier first packet in a later slot.
            udp(62.0, "10.0.0.4", 1000, "10.0.0.9", 53, 80),
        ],
    ));
    let before = recs.len();
    t.finish();
    recs.extend(t.drain_records());
    let firsts: Vec<(String, i64)> = recs[before..]
        .iter()
        .filter(|r| r.kind == FlowRecordKind::End(EndReason::Flushed))
        .map(|r| (r.tuple.src.to_string(), r.first_ns / (S / 10)))
        .collect();
    assert_eq!(
        firsts,
        [
            ("10.0.0.2".to_string(), 20),
            ("10.0.0.4".to_string(), 620),
            ("10.0.0.3".to_string(), 625)
        ]
    );
    assert!(t.is_empty());
}

/// SCTP, UDP-Lite and DCCP carry ports like TCP and UDP: two associations
/// between the same hosts are two flows, each with its ports (tshark's
/// `conv,sctp` keeps them apart too); protocols without ports keep port 0.
#[test]
fn ports_of_sctp_udp_lite_and_dccp_are_part_of_the_key() {
    for proto in [132u8, 136, 33] {
        let mut t = table();
        let p = |ts: f64, src: &str, sport: u16, dst: &str, dport: u16| PacketInfo {
            protocol: proto,
            ..udp(ts, src, sport, dst, dport, 100)
        };
        let mut recs = feed(
            &mut t,
            &[
                p(0.0, "10.0.0.1", 1000, "10.0.0.2", 2905),
                p(0.1, "10.0.0.1", 1001, "10.0.0.2", 2905),
                p(0.2, "10.0.0.2", 2905, "10.0.0.1", 1000),
            ],
        );
        t.finish();
        recs.extend(t.drain_records());
        let mut ends: Vec<_> = ends(&recs)
            .into_iter()
            .map(|r| (r.tuple.src_port, r.tuple.dst_port, r.forward.packets, r.reverse.packets))
            .collect();
        ends.sort();
        assert_eq!(ends, [(1000, 2905, 1, 1), (1001, 2905, 1, 0)], "protocol {proto}");
    }
    // GRE (47) has no ports: whatever the caller fills in, one flow, port 0.
    let mut t = table();
    let gre = |sport: u16| PacketInfo {
        protocol: 47,
        ..udp(0.0, "10.0.0.1", sport, "10.0.0.2", 9, 100)
    };
    let mut recs = feed(&mut t, &[gre(1), gre(2)]);
    t.finish();
    recs.extend(t.drain_records());
    let ends = ends(&recs);
    assert_eq!(ends.len(), 1);
    assert_eq!((ends[0].tuple.src_port, ends[0].tuple.dst_port, ends[0].forward.packets), (0, 0, 2));
}
