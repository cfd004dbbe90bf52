//! End to end: flow table → IPFIX / NetFlow v9 over UDP → `nfcapd` (nfdump
//! package) → `nfdump -r FILE -o csv`: every flow arrives with the packet
//! and byte totals of each direction.
//!
//! nfdump shows an IPFIX biflow (RFC 5103) as one flow: the forward
//! counters as `ipkt`/`ibyt`, the reverse counters (PEN 29305
//! `octetDeltaCount`/`packetDeltaCount`) as `opkt`/`obyt` (nfdump maps them
//! to its "out" counters, `postOctetDeltaCount`/`postPacketDeltaCount`).
//! NetFlow v9 records are unidirectional: `ipkt`/`ibyt` per direction.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netwatch_flowlogs::ipfix::{ExportOptions, ExportProtocol, FlowExporter, NsgDecision};
use netwatch_flowlogs::table::tcp_flags::{ACK, FIN, PSH, SYN};
use netwatch_flowlogs::time::CivilTime;
use netwatch_flowlogs::{FlowRecord, FlowRecordKind, FlowTable, FlowTableConfig, IcmpInfo, PacketInfo};
use netwatch_rules::{Access, Direction};

mod support;
use support::nfcapd::{nfdump_csv, Collector};

/// 2024-03-01T12:00:00Z: an old capture replayed.
const OLD_BASE_NS: i64 = 1_709_294_400 * 1_000_000_000;

thread_local! {
    /// Start of the synthesized capture.
    static BASE_NS: std::cell::Cell<i64> = const { std::cell::Cell::new(OLD_BASE_NS) };
}

fn ns(t_s: f64) -> i64 {
    BASE_NS.get() + (t_s * 1e9).round() as i64
}

/// One hour ago, whole seconds: a live capture (NetFlow v9 times are
/// sysUptime offsets from a boot time within 49 days of the header time).
fn recent_base_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - 3600) * 1_000_000_000
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(t: f64, src: &str, sport: u16, dst: &str, dport: u16, flags: u8, len: u32) -> PacketInfo {
    PacketInfo {
        ts_ns: ns(t),
        src: ip(src),
        dst: ip(dst),
        protocol: 6,
        src_port: sport,
        dst_port: dport,
        icmp: None,
        tcp_flags: flags,
        ip_len: len,
    }
}

fn udp(t: f64, src: &str, sport: u16, dst: &str, dport: u16, len: u32) -> PacketInfo {
    PacketInfo {
        protocol: 17,
        tcp_flags: 0,
        ..tcp(t, src, sport, dst, dport, 0, len)
    }
}

fn icmp(t: f64, src: &str, dst: &str, icmp_type: u8, id: u16, len: u32) -> PacketInfo {
    PacketInfo {
        protocol: if src.contains(':') { 58 } else { 1 },
        src_port: 0,
        dst_port: 0,
        icmp: Some(IcmpInfo { icmp_type, code: 0, id }),
        tcp_flags: 0,
        ..tcp(t, src, 0, dst, 0, 0, len)
    }
}

/// A mix of TCP, UDP and ICMP flows over IPv4 and IPv6; three of them
/// last longer than 5 minutes (`Report` records).
fn packets() -> Vec<PacketInfo> {
    let mut p = Vec::new();
    // Short HTTPS over IPv4 with handshake and FIN.
    let (c, s) = ("10.0.0.4", "52.239.184.180");
    p.extend([
        tcp(0.0, c, 50000, s, 443, SYN, 60),
        tcp(0.01, s, 443, c, 50000, SYN | ACK, 60),
        tcp(0.02, c, 50000, s, 443, ACK, 52),
        tcp(0.03, c, 50000, s, 443, PSH | ACK, 552),
        tcp(0.05, s, 443, c, 50000, PSH | ACK, 1452),
        tcp(0.06, c, 50000, s, 443, FIN | ACK, 52),
        tcp(0.07, s, 443, c, 50000, FIN | ACK, 52),
        tcp(0.08, c, 50000, s, 443, ACK, 52),
    ]);
    // Long SSH over IPv4: 12 minutes, a packet each way every 20 s.
    let (c, s) = ("10.0.0.5", "10.1.0.9");
    p.push(tcp(1.0, c, 40022, s, 22, SYN, 60));
    p.push(tcp(1.001, s, 22, c, 40022, SYN | ACK, 60));
    for i in 0..36 {
        let t = 2.0 + 20.0 * f64::from(i);
        p.push(tcp(t, c, 40022, s, 22, PSH | ACK, 100 + i));
        p.push(tcp(t + 0.5, s, 22, c, 40022, PSH | ACK, 300 + 2 * i));
    }
    p.push(tcp(730.0, c, 40022, s, 22, FIN | ACK, 52));
    p.push(tcp(730.1, s, 22, c, 40022, FIN | ACK, 52));
    p.push(tcp(730.2, c, 40022, s, 22, ACK, 52));
    // DNS over IPv4.
    p.push(udp(3.0, "10.0.0.4", 53000, "168.63.129.16", 53, 71));
    p.push(udp(3.002, "168.63.129.16", 53, "10.0.0.4", 53000, 187));
    // One-way UDP over IPv4 (no reverse packets).
    for i in 0..5 {
        p.push(udp(4.0 + f64::from(i), "10.0.0.4", 5000, "10.0.0.99", 5001, 1000 + i));
    }
    // Long UDP over IPv6: 7 minutes, mostly one way.
    for i in 0..43 {
        let t = 5.0 + 10.0 * f64::from(i);
        p.push(udp(t, "fd00::4", 40000, "fd00::5", 4789, 1200 + i));
        if i % 10 == 0 {
            p.push(udp(t + 0.1, "fd00::5", 4789, "fd00::4", 40000, 90));
        }
    }
    // Short TCP over IPv6.
    let (c, s) = ("2001:db8::10", "2001:db8:1::20");
    p.extend([
        tcp(6.0, c, 51000, s, 8080, SYN, 80),
        tcp(6.01, s, 8080, c, 51000, SYN | ACK, 80),
        tcp(6.02, c, 51000, s, 8080, PSH | ACK, 400),
        tcp(6.03, s, 8080, c, 51000, PSH | ACK, 9000),
        tcp(6.04, c, 51000, s, 8080, FIN | ACK, 72),
        tcp(6.05, s, 8080, c, 51000, FIN | ACK, 72),
    ]);
    // Pings: IPv4 for 6 minutes (a report), IPv6 briefly.
    for i in 0..37 {
        let t = 7.0 + 10.0 * f64::from(i);
        p.push(icmp(t, "10.0.0.4", "10.0.0.5", 8, 77, 84));
        p.push(icmp(t + 0.001, "10.0.0.5", "10.0.0.4", 0, 77, 84));
    }
    for i in 0..3 {
        let t = 8.0 + f64::from(i);
        p.push(icmp(t, "fd00::4", "fd00::5", 128, 5, 104));
        p.push(icmp(t + 0.001, "fd00::5", "fd00::4", 129, 5, 104));
    }
    p.sort_by_key(|x| x.ts_ns);
    p
}

/// Flows' totals from the table's `End` records, and all records in order.
fn run_table(base_ns: i64) -> (Vec<FlowRecord<u32>>, Vec<FlowRecord<u32>>) {
    BASE_NS.set(base_ns);
    let mut t: FlowTable<u32> = FlowTable::new(FlowTableConfig::default()).unwrap();
    let mut recs = Vec::new();
    let mut n = 0;
    for p in packets() {
        t.observe(&p, |_, _| {
            n += 1;
            n
        });
        recs.extend(t.drain_records());
    }
    t.finish();
    recs.extend(t.drain_records());
    let ends: Vec<_> = recs.iter().filter(|r| matches!(r.kind, FlowRecordKind::End(_))).cloned().collect();
    assert_eq!(ends.len(), 8, "8 flows");
    let reports = recs.iter().filter(|r| r.kind == FlowRecordKind::Report).count();
    assert!(reports >= 4, "long flows produce 5-minute reports ({reports})");
    (recs, ends)
}

/// Key of a unidirectional view: (proto, src, sport, dst, dport); ports 0 for ICMP.
type Key = (u8, IpAddr, u16, IpAddr, u16);

fn row_key(r: &BTreeMap<String, String>) -> Key {
    let proto: u8 = r["pr"].trim().parse().unwrap_or_else(|_| match r["pr"].trim() {
        "TCP" => 6,
        "UDP" => 17,
        "ICMP" => 1,
        "ICMP6" => 58,
        p => panic!("protocol {p}"),
    });
    let icmp = proto == 1 || proto == 58;
    let port = |k: &str| if icmp { 0 } else { r[k].trim().parse::<f64>().unwrap() as u16 };
    (
        proto,
        r["sa"].trim().parse().unwrap(),
        port("sp"),
        r["da"].trim().parse().unwrap(),
        port("dp"),
    )
}

fn num(r: &BTreeMap<String, String>, k: &str) -> u64 {
    r.get(k).map_or(0, |v| v.trim().parse().unwrap_or_else(|_| panic!("{k}={v}")))
}

/// `YYYY-MM-DD hh:mm:ss` (UTC) as nfdump's csv `ts` shows it.
fn nfdump_time(ns: i64) -> String {
    let t = CivilTime::from_unix_ns(ns);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Every row's first-seen time is its flow's first packet.
fn check_start_times(rows: &[BTreeMap<String, String>], ends: &[FlowRecord<u32>]) {
    for r in rows {
        let k = row_key(r);
        let end = ends
            .iter()
            .find(|e| tuple_key(e, true) == k || tuple_key(e, false) == k)
            .unwrap_or_else(|| panic!("row of no flow: {k:?}"));
        assert_eq!(r["ts"].trim(), nfdump_time(end.first_ns), "{k:?}");
    }
}

fn tuple_key(rec: &FlowRecord<u32>, forward: bool) -> Key {
    let t = &rec.tuple;
    let icmp = t.protocol == 1 || t.protocol == 58;
    let (sp, dp) = if icmp { (0, 0) } else { (t.src_port, t.dst_port) };
    if forward {
        (t.protocol, t.src, sp, t.dst, dp)
    } else {
        (t.protocol, t.dst, dp, t.src, sp)
    }
}

fn export_all(protocol: ExportProtocol, col: &Collector, recs: &[FlowRecord<u32>]) -> u64 {
    let mut ex = FlowExporter::new(col.addr(), protocol, ExportOptions::default()).unwrap();
    for r in recs {
        let nsg = NsgDecision {
            direction: Some(if r.user % 2 == 0 { Direction::Inbound } else { Direction::Outbound }),
            access: Some(Access::Allow),
            nsg_name: "nsg-web",
            rule_name: "UserRule_AllowAll",
        };
        ex.export(r, Some(&nsg)).unwrap();
        // Don't outrun a busy collector: keep its 2 MB socket buffer at
        // most half full.
        if ex.stats().messages % 4 == 3 {
            col.wait_below(1 << 20);
        }
    }
    ex.flush().unwrap();
    ex.stats().data_records
}

#[test]
fn ipfix_biflows_reach_nfcapd_with_their_totals() {
    let (recs, ends) = run_table(OLD_BASE_NS);
    let mut col = Collector::start();
    let sent = export_all(ExportProtocol::Ipfix, &col, &recs);
    let file = col.stop();
    let rows = nfdump_csv(&file);
    assert_eq!(rows.len() as u64, sent, "every data record arrived; log: {}", col.log());
    // Sum the records of each flow.
    let mut got: BTreeMap<Key, [u64; 4]> = BTreeMap::new();
    for r in &rows {
        let e = got.entry(row_key(r)).or_default();
        e[0] += num(r, "ipkt");
        e[1] += num(r, "ibyt");
        e[2] += num(r, "opkt");
        e[3] += num(r, "obyt");
    }
    for end in &ends {
        let k = tuple_key(end, true);
        let want = [end.forward.packets, end.forward.bytes, end.reverse.packets, end.reverse.bytes];
        assert_eq!(got.get(&k), Some(&want), "flow {k:?}");
    }
    assert_eq!(got.len(), ends.len());
    check_start_times(&rows, &ends);
}

#[test]
fn netflow_v9_unidirectional_records_reach_nfcapd_with_their_totals() {
    netflow_v9_round_trip(recent_base_ns());
}

/// Flow times more than 49.7 days before the wall clock: the exporter puts
/// flow time in the v9 header.
#[test]
fn netflow_v9_old_capture_reaches_nfcapd_with_its_times() {
    netflow_v9_round_trip(OLD_BASE_NS);
}

fn netflow_v9_round_trip(base_ns: i64) {
    let (recs, ends) = run_table(base_ns);
    let mut col = Collector::start();
    let sent = export_all(ExportProtocol::NetflowV9, &col, &recs);
    let file = col.stop();
    let rows = nfdump_csv(&file);
    assert_eq!(rows.len() as u64, sent, "every data record arrived; log: {}", col.log());
    let mut got: BTreeMap<Key, [u64; 2]> = BTreeMap::new();
    for r in &rows {
        let e = got.entry(row_key(r)).or_default();
        e[0] += num(r, "ipkt");
        e[1] += num(r, "ibyt");
    }
    let mut want: BTreeMap<Key, [u64; 2]> = BTreeMap::new();
    for end in &ends {
        if end.forward.packets > 0 {
            want.insert(tuple_key(end, true), [end.forward.packets, end.forward.bytes]);
        }
        if end.reverse.packets > 0 {
            want.insert(tuple_key(end, false), [end.reverse.packets, end.reverse.bytes]);
        }
    }
    assert_eq!(got, want);
    check_start_times(&rows, &ends);
}
