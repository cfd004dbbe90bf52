//! Writers: atomic append across runs, v1, bucketing, and C/E counters
//! summing to the flow totals through the files.

mod common;

use std::collections::HashMap;

use common::*;
use netwatch_flowlogs::table::tcp_flags::{ACK, SYN};
use netwatch_flowlogs::{
    read_file, FlowLogError, FlowLogEvent, FlowLogRecord, FlowRecordKind, FlowTable, FlowTableConfig, FlowTuple, MacAddress,
    NsgFlowLogVersion, NsgFlowLogWriter, NsgFlowState, NsgLogTarget, TupleCounters, VnetFlowLogWriter, VnetLogTarget,
};
use netwatch_rules::{Access, Direction};

const NSG_ID: &str = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/networkSecurityGroups/web-nsg";

fn target() -> NsgLogTarget {
    NsgLogTarget::new(NSG_ID, None).unwrap()
}

fn mac() -> MacAddress {
    "00-0d-3a-d5-3b-86".parse().unwrap()
}

fn begin(ts_s: i64, sport: u16) -> FlowLogEvent {
    FlowLogEvent {
        logged_ns: ts_s * S,
        time_ns: ts_s * S,
        tuple: FlowTuple {
            protocol: 6,
            src: ip("10.0.0.4"),
            src_port: sport,
            dst: ip("13.67.143.118"),
            dst_port: 443,
        },
        direction: Direction::Outbound,
        access: Access::Allow,
        state: netwatch_flowlogs::FlowLogState::Begin,
        counters: TupleCounters::default(),
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_second_run_appends_to_the_hour_file() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040; // 2023-11-14T22:14:00Z
    let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    w.record(&target(), mac(), "UserRule_allow-https", &begin(t0, 1));
    w.record(&target(), mac(), "UserRule_allow-https", &begin(t0 + 61, 2));
    w.flush().unwrap();
    let path = w.file_path(&target(), mac(), t0 * S);
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(read_file(&path).unwrap().records.len(), 2, "one record per minute");

    // Another process, later: same NSG, MAC and hour.
    let mut w2 = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    w2.record(&target(), mac(), "DefaultRule_AllowInternetOutBound", &begin(t0 + 300, 3));
    w2.flush().unwrap();
    let second = std::fs::read_to_string(&path).unwrap();
    assert!(second.starts_with(first.strip_suffix("]}").unwrap()), "existing bytes kept");
    let f = read_file(&path).unwrap();
    assert_eq!(f.records.len(), 3);
    assert_eq!(f.tuple_count(), 3);
    let FlowLogRecord::Nsg(last) = &f.records[2] else { panic!() };
    assert_eq!(last.rules[0].rule, "DefaultRule_AllowInternetOutBound");
    assert_eq!(last.resource_id, NSG_ID.to_uppercase());
    assert_eq!(last.mac_address.as_deref(), Some("000D3AD53B86"));
    assert_eq!(last.rules[0].flows[0].mac, "000D3AD53B86");
    assert_eq!(last.time, "2023-11-14T22:19:00.0000000Z");
    // The next hour goes to a new file.
    let mut w3 = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    w3.record(&target(), mac(), "UserRule_allow-https", &begin(t0 + 3600, 4));
    w3.flush().unwrap();
    assert_eq!(read_file(&path).unwrap().records.len(), 3);
    // No temp files left behind.
    let files = files_under(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|p| p.file_name().unwrap() == "PT1H.json"));
}

/// A record's minute, and per (rule, MAC or ACL) its tuples' times.
type MinuteTuples = (i64, Vec<(String, String, Vec<i64>)>);

/// Per record: its minute, and per (rule, MAC or ACL) its tuples' times.
fn records_of(path: &std::path::Path) -> Vec<MinuteTuples> {
    read_file(path)
        .unwrap()
        .records
        .iter()
        .map(|r| match r {
            FlowLogRecord::Nsg(r) => (
                r.time_ns.div_euclid(60 * S),
                r.rules
                    .iter()
                    .flat_map(|g| {
                        g.flows
                            .iter()
                            .map(|m| (g.rule.clone(), m.mac.clone(), m.tuples.iter().map(|t| t.time_s).collect()))
                    })
                    .collect(),
            ),
            FlowLogRecord::Vnet(r) => (
                r.time_ns.div_euclid(60 * S),
                r.acls
                    .iter()
                    .flat_map(|a| {
                        a.groups.iter().map(|g| {
                            (
                                g.rule.clone(),
                                a.acl_id.clone(),
                                g.tuples.iter().map(|t| t.time_ms / 1000).collect(),
                            )
                        })
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// Overlapping captures (or a second run over the same time) write a
/// minute again: its tuples go into the minute's record, under their rule
/// and MAC, in time order; the file keeps one record per minute, in time
/// order (spec §7.1: one record per NSG per minute).
#[test]
fn a_minute_written_again_is_merged_into_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040; // 22:14:00Z
    let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 10, 1));
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 30, 2));
    w.flush_before((t0 + 60) * S).unwrap();
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 70, 3));
    w.flush().unwrap();
    let path = w.file_path(&target(), mac(), t0 * S);
    let m0 = t0 / 60;
    // The clock goes back (another capture): minute m0 again, then m0+1.
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 5, 4));
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 20, 5));
    w.record(&target(), mac(), "UserRule_b", &begin(t0 + 50, 6));
    w.flush_before((t0 + 60) * S).unwrap();
    let mac_text = "000D3AD53B86".to_string();
    let a = |times: &[i64]| {
        (
            "UserRule_a".to_string(),
            mac_text.clone(),
            times.iter().map(|t| t0 + t).collect::<Vec<_>>(),
        )
    };
    let b = |times: &[i64]| {
        (
            "UserRule_b".to_string(),
            mac_text.clone(),
            times.iter().map(|t| t0 + t).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        records_of(&path),
        vec![(m0, vec![a(&[5, 10, 20, 30]), b(&[50])]), (m0 + 1, vec![a(&[70])])]
    );
    let FlowLogRecord::Nsg(first) = &read_file(&path).unwrap().records[0] else {
        panic!()
    };
    assert_eq!(first.time, "2023-11-14T22:14:50.0000000Z", "the latest event's time");
    // Another run, later: minute m0+1 again, and a later minute.
    let mut w2 = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    w2.record(&target(), mac(), "UserRule_a", &begin(t0 + 70, 7));
    w2.record(&target(), mac(), "UserRule_a", &begin(t0 + 130, 8));
    w2.flush().unwrap();
    assert_eq!(
        records_of(&path),
        vec![
            (m0, vec![a(&[5, 10, 20, 30]), b(&[50])]),
            (m0 + 1, vec![a(&[70, 70])]),
            (m0 + 2, vec![a(&[130])])
        ]
    );
    // Tuples of one time keep the order they were written in.
    let FlowLogRecord::Nsg(second) = &read_file(&path).unwrap().records[1] else {
        panic!()
    };
    let ports: Vec<u16> = second.tuples().map(|t| t.2.src_port).collect();
    assert_eq!(ports, [3, 7]);
    assert_eq!(files_under(dir.path()).len(), 1, "no temporary file left");
}

/// Rewriting an hour file to merge a minute touches only that minute's
/// records: the others keep their bytes, a record of another format
/// version stays apart, and an old file's two records of one minute become
/// one.
#[test]
fn merging_a_minute_leaves_the_other_records_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040;
    let mut w1 = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V1);
    w1.record(&target(), mac(), "UserRule_a", &begin(t0 + 1, 1));
    w1.flush().unwrap();
    let path = w1.file_path(&target(), mac(), t0 * S);
    let v1_text = std::fs::read_to_string(&path).unwrap();
    let v1_record = v1_text.strip_prefix("{\"records\":[").unwrap().strip_suffix("]}").unwrap();
    let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    for (t, port) in [(t0 + 2, 2), (t0 + 62, 3)] {
        w.record(&target(), mac(), "UserRule_a", &begin(t, port));
        w.flush().unwrap();
    }
    // As an earlier netwatch left it: minute t0 twice, v2 (and v1 before them).
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 3, 4));
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<serde_json::Value> =
        serde_json::from_value(serde_json::from_str::<serde_json::Value>(&text).unwrap()["records"].clone()).unwrap();
    let mut dup = records[1].clone();
    dup["properties"]["flows"][0]["flows"][0]["flowTuples"][0] = "1700000044,10.0.0.4,13.67.143.118,9,443,T,O,A,B,,,,".into();
    let pretty_later = serde_json::to_string_pretty(&records[2]).unwrap();
    let old = format!(
        "{{\"records\":[{v1_record},{},{},{pretty_later}]}}",
        serde_json::to_string(&records[1]).unwrap(),
        serde_json::to_string(&dup).unwrap()
    );
    std::fs::write(&path, &old).unwrap();
    w.flush().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&format!("{{\"records\":[{v1_record},")), "{text}");
    assert!(text.ends_with(&format!(",{pretty_later}]}}")), "{text}");
    let f = read_file(&path).unwrap();
    assert_eq!(f.records.len(), 3);
    let FlowLogRecord::Nsg(merged) = &f.records[1] else { panic!() };
    assert_eq!(merged.version, 2);
    let ports: Vec<u16> = merged.tuples().map(|t| t.2.src_port).collect();
    assert_eq!(ports, [2, 4, 9], "in time order");
}

/// The same for VNet flow logs: tuples merged under their ACL and rule.
#[test]
fn a_vnet_minute_written_again_is_merged_into_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040;
    let target = VnetLogTarget::new(
        &VnetLogTarget::default_flow_log_id("sub-1", "westeurope", "vnet-flowlog"),
        "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/virtualNetworks/vnet-1",
        None,
    )
    .unwrap();
    let (acl1, acl2) = ("00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002");
    let mut w = VnetFlowLogWriter::new(dir.path());
    w.record(&target, mac(), acl1, "AllowWeb", &begin(t0 + 10, 1));
    w.record(&target, mac(), acl1, "AllowWeb", &begin(t0 + 65, 2));
    w.flush().unwrap();
    let path = w.file_path(&target, mac(), t0 * S);
    w.record(&target, mac(), acl1, "AllowWeb", &begin(t0 + 3, 3));
    w.record(&target, mac(), acl1, "DefaultRule_AllowInternetOutBound", &begin(t0 + 4, 4));
    w.record(&target, mac(), acl2, "AllowWeb", &begin(t0 + 5, 5));
    w.record(&target, mac(), acl1, "AllowWeb", &begin(t0 + 61, 6));
    w.flush().unwrap();
    let m0 = t0 / 60;
    let g = |rule: &str, acl: &str, times: &[i64]| (rule.to_string(), acl.to_string(), times.iter().map(|t| t0 + t).collect::<Vec<_>>());
    assert_eq!(
        records_of(&path),
        vec![
            (
                m0,
                vec![
                    g("AllowWeb", acl1, &[3, 10]),
                    g("DefaultRule_AllowInternetOutBound", acl1, &[4]),
                    g("AllowWeb", acl2, &[5])
                ]
            ),
            (m0 + 1, vec![g("AllowWeb", acl1, &[61, 65])]),
        ]
    );
}

#[test]
fn a_foreign_hour_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040;
    let w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    let path = w.file_path(&target(), mac(), t0 * S);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    for junk in ["{\"records\":[", "[1,2]", "{\"records\":[],\"x\":1}"] {
        std::fs::write(&path, junk).unwrap();
        let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
        w.record(&target(), mac(), "UserRule_a", &begin(t0, 1));
        let e = w.flush().unwrap_err();
        assert!(matches!(e, FlowLogError::ExistingFile { .. }), "{e}");
        assert!(e.to_string().contains("PT1H.json"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), junk);
        // The records stay buffered for a retry.
        std::fs::write(&path, "{\"records\":[]}").unwrap();
        w.flush().unwrap();
        assert_eq!(read_file(&path).unwrap().tuple_count(), 1);
    }
}

#[test]
fn flush_before_writes_only_finished_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040;
    let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    w.record(&target(), mac(), "UserRule_a", &begin(t0, 1));
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 65, 2));
    w.flush_before((t0 + 70) * S).unwrap();
    let path = w.file_path(&target(), mac(), t0 * S);
    assert_eq!(read_file(&path).unwrap().records.len(), 1);
    w.flush().unwrap();
    assert_eq!(read_file(&path).unwrap().records.len(), 2);
    assert_eq!(w.stats().file_writes, 2);
    assert_eq!(w.stats().records_written, 2);
}

#[test]
fn version_1_writes_eight_field_tuples_at_begin_only() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040;
    let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V1);
    let mut deny = begin(t0, 1);
    deny.access = Access::Deny;
    deny.direction = Direction::Inbound;
    assert!(w.record(&target(), mac(), "DefaultRule_DenyAllInBound", &deny));
    let mut end = begin(t0 + 5, 1);
    end.state = netwatch_flowlogs::FlowLogState::End;
    assert!(!w.record(&target(), mac(), "UserRule_a", &end));
    assert_eq!(w.stats().skipped_v1, 1);
    w.flush().unwrap();
    let path = w.file_path(&target(), mac(), t0 * S);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"Version\":1"));
    assert!(
        text.contains("\"flowTuples\":[\"1700000040,10.0.0.4,13.67.143.118,1,443,T,I,D\"]"),
        "{text}"
    );
    let f = read_file(&path).unwrap();
    let FlowLogRecord::Nsg(r) = &f.records[0] else { panic!() };
    assert_eq!(r.version, 1);
    assert_eq!(r.tuples().next().unwrap().2.state, None);
}

#[test]
fn system_id_is_derived_stably_without_a_guid() {
    let a = NsgLogTarget::new(NSG_ID, None).unwrap();
    let b = NsgLogTarget::new(&NSG_ID.to_uppercase(), Some("  ")).unwrap();
    assert_eq!(a.system_id(), b.system_id());
    assert_eq!(
        NsgLogTarget::new(NSG_ID, Some("c4cd669a-0cff-4e64-b3a7-0c9bb03c6537"))
            .unwrap()
            .system_id(),
        "c4cd669a-0cff-4e64-b3a7-0c9bb03c6537"
    );
    let e = NsgLogTarget::new(
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/..",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("'..'"), "{e}");
}

/// Long and short flows through table → writer → file → reader: per flow,
/// the C/E counters in the files sum to the table's totals, and each
/// allowed flow has exactly one B and one E.
#[test]
fn counters_over_c_and_e_tuples_sum_to_flow_totals() {
    let dir = tempfile::tempdir().unwrap();
    let mut t: FlowTable<Access> = FlowTable::new(FlowTableConfig::default()).unwrap();
    let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    let me = "10.0.0.4";
    let base = 1_700_000_000.0;
    let mut totals: HashMap<(u16, u16), TupleCounters> = HashMap::new();
    let pump = |t: &mut FlowTable<Access>, w: &mut NsgFlowLogWriter, totals: &mut HashMap<(u16, u16), TupleCounters>| {
        for r in t.drain_records() {
            if let FlowRecordKind::End(_) = r.kind {
                totals.insert(
                    (r.tuple.src_port, r.tuple.dst_port),
                    TupleCounters {
                        packets_src_to_dst: r.forward.packets,
                        bytes_src_to_dst: r.forward.bytes,
                        packets_dst_to_src: r.reverse.packets,
                        bytes_dst_to_src: r.reverse.bytes,
                    },
                );
            }
            let dir = if r.tuple.dst == ip(me) {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            w.record(&target(), mac(), "UserRule_any", &FlowLogEvent::from_record(&r, dir, r.user));
        }
        w.flush_before(t.now_ns()).unwrap();
    };
    // 8 flows of different lengths, interleaved: flow k lasts k*3 minutes
    // with a packet each way every 20 s.
    let mut pkts = Vec::new();
    for k in 0..8u16 {
        let sport = 40_000 + k;
        let start = base + f64::from(k) * 7.0;
        pkts.push(tcp(start, me, sport, "52.1.2.3", 443, SYN, 60));
        pkts.push(tcp(start + 0.05, "52.1.2.3", 443, me, sport, SYN | ACK, 60));
        let n = u32::from(k) * 9;
        for i in 1..=n {
            let ts = start + f64::from(i) * 20.0;
            pkts.push(tcp(ts, me, sport, "52.1.2.3", 443, ACK, 100 + u32::from(k)));
            pkts.push(tcp(ts + 0.2, "52.1.2.3", 443, me, sport, ACK, 1400));
        }
    }
    pkts.sort_by_key(|p| p.ts_ns);
    for p in &pkts {
        t.observe(p, |_, _| Access::Allow);
        pump(&mut t, &mut w, &mut totals);
    }
    t.finish();
    pump(&mut t, &mut w, &mut totals);
    w.flush().unwrap();

    let mut sums: HashMap<(u16, u16), TupleCounters> = HashMap::new();
    let mut begins: HashMap<(u16, u16), usize> = HashMap::new();
    let mut ends: HashMap<(u16, u16), usize> = HashMap::new();
    let mut continuing = 0;
    for path in files_under(dir.path()) {
        for r in read_file(&path).unwrap().records {
            let FlowLogRecord::Nsg(r) = r else { panic!() };
            for (_, _, tup) in r.tuples() {
                let key = (tup.src_port, tup.dst_port);
                match tup.state {
                    Some(NsgFlowState::Begin) => *begins.entry(key).or_default() += 1,
                    Some(NsgFlowState::End) => *ends.entry(key).or_default() += 1,
                    Some(NsgFlowState::Continuing) => continuing += 1,
                    None => panic!("v1 tuple"),
                }
                if matches!(tup.state, Some(NsgFlowState::Continuing | NsgFlowState::End)) {
                    assert!(tup.counters.is_some(), "a C/E tuple without counters: {tup:?}");
                }
                let e = sums.entry(key).or_default();
                *e = *e + tup.counters.unwrap_or_default();
            }
        }
    }
    // The table's totals are what the packets above add up to: flow k has
    // 1 + 9k packets each way, 60 + 9k(100 + k) bytes out and 60 + 9k*1400 back.
    let expected: HashMap<(u16, u16), TupleCounters> = (0..8u64)
        .map(|k| {
            let n = 9 * k;
            let c = TupleCounters {
                packets_src_to_dst: 1 + n,
                bytes_src_to_dst: 60 + n * (100 + k),
                packets_dst_to_src: 1 + n,
                bytes_dst_to_src: 60 + n * 1400,
            };
            ((40_000 + k as u16, 443), c)
        })
        .collect();
    assert_eq!(totals, expected);
    assert_eq!(sums, totals);
    assert!(begins.values().all(|&n| n == 1) && begins.len() == 8);
    assert!(ends.values().all(|&n| n == 1) && ends.len() == 8);
    // Flow k lasts 3k minutes: floor(3k*60/300) reports (flows ending on a boundary get E instead).
    assert!(continuing >= 8, "{continuing} C tuples");
}

/// A flow's tuples are in time order: an `E` with no packet since the
/// flow's last `C` (all its packets before a 5-minute report, or before an
/// active-timeout cut) is timed by its end, not by its last packet, which
/// would put it before that `C`.
#[test]
fn an_end_after_a_quiet_report_comes_after_it() {
    let udp = |ts: f64| udp(ts, "10.0.0.4", 5000, "13.67.143.118", 53, 70);
    for (cfg, pkts, finish) in [
        // A packet every 50 s, the last at 290 s; report at 300 s, idle end at 350 s.
        (
            FlowTableConfig::default(),
            vec![udp(0.0), udp(50.0), udp(100.0), udp(150.0), udp(200.0), udp(250.0), udp(290.0)],
            false,
        ),
        // Cut at 30 s (after the packet at 29 s); the capture ends at 40 s.
        (
            FlowTableConfig {
                active_timeout_ns: Some(30 * S),
                ..FlowTableConfig::default()
            },
            vec![udp(0.0), udp(29.0), udp(29.5)],
            true,
        ),
    ] {
        let cfg = FlowTableConfig {
            report_interval_ns: Some(300 * S),
            ..cfg
        };
        let mut t: FlowTable<()> = FlowTable::new(cfg).unwrap();
        let mut events = Vec::new();
        let mut take = |t: &mut FlowTable<()>| {
            for r in t.drain_records() {
                events.push(FlowLogEvent::from_record(&r, Direction::Outbound, Access::Allow));
            }
        };
        for p in &pkts {
            t.observe(p, |_, _| ());
            take(&mut t);
        }
        if finish {
            t.advance(40 * S);
            t.finish();
        } else {
            t.advance(1000 * S);
        }
        take(&mut t);
        let states: Vec<_> = events.iter().map(|e| e.state).collect();
        use netwatch_flowlogs::FlowLogState::{Continuing, End};
        assert_eq!(&states[states.len() - 2..], [Continuing, End], "{events:?}");
        let times: Vec<i64> = events.iter().map(|e| e.time_ns).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "tuple times go back: {times:?}");
        let end = events.last().unwrap();
        assert_eq!(end.counters, TupleCounters::default());
        assert_eq!(end.time_ns, if finish { 40 * S } else { 350 * S });
    }
}

/// A file an earlier version left with a minute twice gets that minute
/// merged too when another minute of it is written again: one record per
/// minute again, every tuple kept once.
#[test]
fn every_minute_held_twice_is_merged_when_the_file_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_040;
    let mut w = NsgFlowLogWriter::new(dir.path(), NsgFlowLogVersion::V2);
    for (t, port) in [(t0 + 2, 2), (t0 + 62, 3)] {
        w.record(&target(), mac(), "UserRule_a", &begin(t, port));
        w.flush().unwrap();
    }
    let path = w.file_path(&target(), mac(), t0 * S);
    let text = std::fs::read_to_string(&path).unwrap();
    let records: Vec<serde_json::Value> =
        serde_json::from_value(serde_json::from_str::<serde_json::Value>(&text).unwrap()["records"].clone()).unwrap();
    // Minute t0 + 60 twice, as overlapping captures left it before merging.
    let mut dup = records[1].clone();
    dup["properties"]["flows"][0]["flows"][0]["flowTuples"][0] = "1700000101,10.0.0.4,13.67.143.118,9,443,T,O,A,B,,,,".into();
    let old = format!(
        "{{\"records\":[{},{},{}]}}",
        serde_json::to_string(&records[0]).unwrap(),
        serde_json::to_string(&records[1]).unwrap(),
        serde_json::to_string(&dup).unwrap()
    );
    std::fs::write(&path, &old).unwrap();
    // Minute t0 written again.
    w.record(&target(), mac(), "UserRule_a", &begin(t0 + 5, 4));
    w.flush().unwrap();
    let got = records_of(&path);
    let minutes: Vec<i64> = got.iter().map(|(m, _)| *m).collect();
    assert_eq!(minutes, [t0 / 60, t0 / 60 + 1], "{got:?}");
    assert_eq!(got[0].1[0].2, [t0 + 2, t0 + 5]);
    assert_eq!(got[1].1[0].2, [t0 + 61, t0 + 62], "the minute held twice, merged");
}
