//! Flow logs end to end: a corpus capture replayed through a NIC with an NSG
//! on its subnet and one on the NIC, written as NSG flow logs (v2, v1) and
//! VNet flow logs (v4), read back and checked against the real Azure samples,
//! `netwatch flows` totals, and tshark.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netwatch_flowlogs::{read_file, FlowLogRecord, NsgFlowState, NsgFlowTuple, TupleCounters, VnetFlowState};
use serde_json::Value;

use common::netwatch;

fn pt1h_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
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

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netwatch-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Flow key as both outputs write it: protocol letter or number, initiator, responder.
type Key = (String, String, u16, String, u16);

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Totals {
    pkts_fwd: u64,
    bytes_fwd: u64,
    pkts_rev: u64,
    bytes_rev: u64,
}

impl Totals {
    /// Adds a C/E tuple's counters.
    fn add(&mut self, c: &TupleCounters) {
        self.pkts_fwd += c.packets_src_to_dst;
        self.bytes_fwd += c.bytes_src_to_dst;
        self.pkts_rev += c.packets_dst_to_src;
        self.bytes_rev += c.bytes_dst_to_src;
    }
}

/// An NSG flow-log tuple's flow key (NSG logs hold TCP and UDP only).
fn nsg_key(t: &NsgFlowTuple) -> Key {
    (
        if t.protocol.number() == 6 { "TCP".into() } else { "UDP".into() },
        t.src.to_string(),
        t.src_port,
        t.dst.to_string(),
        t.dst_port,
    )
}

struct Evaluated {
    /// Per flow: (access, totals).
    flows: BTreeMap<Key, (String, Totals)>,
}

const CAPTURE: &str = "../shared/corpus/pcap-bulk/pcapplusplus__example.pcap";
const ENV: &[&str] = common::STRICT_WEB_NIC;

fn evaluate(extra: &[&str]) -> Evaluated {
    evaluate_files(extra, &[CAPTURE])
}

fn evaluate_files(extra: &[&str], captures: &[&str]) -> Evaluated {
    let mut args = vec!["evaluate"];
    args.extend_from_slice(ENV);
    args.extend_from_slice(extra);
    args.extend_from_slice(captures);
    let o = netwatch(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut flows = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let proto = v["protocol"].as_str().unwrap().to_string();
        let k = (
            proto,
            v["initiator"].as_str().unwrap().to_string(),
            v["initiatorPort"].as_u64().unwrap() as u16,
            v["responder"].as_str().unwrap().to_string(),
            v["responderPort"].as_u64().unwrap() as u16,
        );
        let t = Totals {
            pkts_fwd: v["packetsSent"].as_u64().unwrap(),
            bytes_fwd: v["bytesSent"].as_u64().unwrap(),
            pkts_rev: v["packetsReceived"].as_u64().unwrap(),
            bytes_rev: v["bytesReceived"].as_u64().unwrap(),
        };
        let access = v["access"].as_str().unwrap_or("Transit").to_string();
        let e = flows.entry(k).or_insert((access, Totals::default()));
        e.1.pkts_fwd += t.pkts_fwd;
        e.1.bytes_fwd += t.bytes_fwd;
        e.1.pkts_rev += t.pkts_rev;
        e.1.bytes_rev += t.bytes_rev;
    }
    Evaluated { flows }
}

fn keys_in_order(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn sample(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(common::corpus(&format!("azure/{name}"))).unwrap()).unwrap()
}

/// Every field of every record has Azure's form: same keys in the same
/// order as the real sample, same constants, tuples of the same arity.
/// A rule's tuples are listed by time, as in Azure's records.
fn assert_in_time_order(tuples: &Value) {
    let times: Vec<i64> = tuples
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "tuples out of time order: {times:?}");
}

fn check_nsg_structure(doc: &Value) {
    let s = sample("nsg_flowlog_v2__elastic_sample_testdata.json");
    let sr = &s["records"][0];
    for r in doc["records"].as_array().unwrap() {
        // Real blobs carry macAddress after systemId (spec §7.1); the docs sample omits it.
        let mut want = keys_in_order(sr);
        want.insert(2, "macAddress".into());
        assert_eq!(keys_in_order(r), want);
        assert_eq!(r["category"], sr["category"]);
        assert_eq!(r["operationName"], sr["operationName"]);
        let t = r["time"].as_str().unwrap();
        assert_eq!(t.len(), "2018-11-13T12:00:35.3899262Z".len(), "{t}");
        assert_eq!(keys_in_order(&r["properties"]), keys_in_order(&sr["properties"]));
        for f in r["properties"]["flows"].as_array().unwrap() {
            assert_eq!(keys_in_order(f), keys_in_order(&sr["properties"]["flows"][0]));
            let rule = f["rule"].as_str().unwrap();
            assert!(rule.starts_with("UserRule_") || rule.starts_with("DefaultRule_"), "{rule}");
            for m in f["flows"].as_array().unwrap() {
                assert_eq!(keys_in_order(m), keys_in_order(&sr["properties"]["flows"][0]["flows"][0]));
                assert_eq!(m["mac"].as_str().unwrap().len(), 12);
                for tuple in m["flowTuples"].as_array().unwrap() {
                    assert_eq!(tuple.as_str().unwrap().split(',').count(), 13, "{tuple}");
                }
                assert_in_time_order(&m["flowTuples"]);
            }
        }
        let rid = r["resourceId"].as_str().unwrap();
        assert_eq!(rid, rid.to_uppercase());
    }
}

fn check_vnet_structure(doc: &Value) {
    let s = sample("vnet_flowlog_v4__elastic_sample_testdata.json");
    let sr = &s["records"][0];
    for r in doc["records"].as_array().unwrap() {
        assert_eq!(keys_in_order(r), keys_in_order(sr));
        for k in ["flowLogVersion", "category", "operationName"] {
            assert_eq!(r[k], sr[k], "{k}");
        }
        assert_eq!(keys_in_order(&r["flowRecords"]), keys_in_order(&sr["flowRecords"]));
        for f in r["flowRecords"]["flows"].as_array().unwrap() {
            assert_eq!(keys_in_order(f), keys_in_order(&sr["flowRecords"]["flows"][0]));
            for g in f["flowGroups"].as_array().unwrap() {
                assert_eq!(keys_in_order(g), keys_in_order(&sr["flowRecords"]["flows"][0]["flowGroups"][0]));
                for t in g["flowTuples"].as_array().unwrap() {
                    let parts: Vec<&str> = t.as_str().unwrap().split(',').collect();
                    assert_eq!(parts.len(), 13, "{t}");
                    assert_eq!(parts[0].len(), 13, "millisecond time stamp: {t}");
                    assert!(parts[5].parse::<u8>().is_ok(), "IANA protocol number: {t}");
                    assert_eq!(parts[8], "NX");
                }
                assert_in_time_order(&g["flowTuples"]);
            }
        }
    }
}

/// tshark's packets and IP bytes per direction of each TCP/UDP conversation:
/// (protocol, source address and port, destination address and port).
type ConvKey = (u8, String, u16, String, u16);

fn tshark_totals(file: &str) -> HashMap<ConvKey, (u64, u64)> {
    let out = Command::new("tshark")
        .args(["-n", "-r", file, "-o", "ip.defragment:FALSE", "-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ip.proto",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "ip.len",
        ])
        .current_dir(common::root())
        .output()
        .expect("tshark is not installed: run `make test`, which installs it");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut m = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 8 || f[0].contains(',') {
            continue;
        }
        let (proto, sp, dp) = match f[2] {
            "6" => (6u8, f[3], f[4]),
            "17" => (17u8, f[5], f[6]),
            _ => continue,
        };
        let (Ok(sp), Ok(dp), Ok(len)) = (sp.parse::<u16>(), dp.parse::<u16>(), f[7].parse::<u64>()) else {
            continue;
        };
        let e = m.entry((proto, f[0].to_string(), sp, f[1].to_string(), dp)).or_insert((0, 0));
        e.0 += 1;
        e.1 += len;
    }
    m
}

#[test]
fn nsg_flow_logs_match_flows_and_tshark() {
    let dir = tmpdir("nsg");
    let d = dir.to_str().unwrap();
    let ev = evaluate(&["--flow-logs", d]);
    let files = pt1h_files(&dir);
    assert!(!files.is_empty());
    let mut sums: BTreeMap<Key, Totals> = BTreeMap::new();
    let mut begins: BTreeSet<Key> = BTreeSet::new();
    let mut nsgs = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().to_string();
        assert!(
            rel.starts_with("insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/"),
            "{rel}"
        );
        assert!(
            rel.ends_with("/PT1H.json") && rel.contains("/m=00/macAddress=000D3A2B1101/"),
            "{rel}"
        );
        // A plain JSON parser reads it, in Azure's shape.
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        check_nsg_structure(&doc);
        // Our reader reads it too.
        let parsed = read_file(f).unwrap_or_else(|e| panic!("{e}"));
        for rec in parsed.records {
            let FlowLogRecord::Nsg(r) = rec else { panic!("not an NSG record") };
            nsgs.insert(r.resource_id.clone());
            for (_, _, t) in r.tuples() {
                {
                    let k = nsg_key(t);
                    match t.state {
                        Some(NsgFlowState::Begin) => {
                            begins.insert(k.clone());
                        }
                        Some(NsgFlowState::Continuing) | Some(NsgFlowState::End) => {
                            let c = t.counters.unwrap();
                            let s = sums.entry(k).or_default();
                            s.add(&c);
                        }
                        None => panic!("v2 tuple without state"),
                    }
                }
            }
        }
    }
    // Denied flows are logged by the NIC NSG that denied them, allowed
    // outbound flows by the subnet NSG, the last to allow them.
    assert_eq!(nsgs.len(), 2, "{nsgs:?}");
    let logged: BTreeMap<Key, Totals> = ev
        .flows
        .iter()
        .filter(|(k, (access, _))| access == "Allow" && (k.0 == "TCP" || k.0 == "UDP"))
        .map(|(k, (_, t))| (k.clone(), *t))
        .collect();
    let denied: BTreeSet<Key> = ev
        .flows
        .iter()
        .filter(|(k, (a, _))| a == "Deny" && (k.0 == "TCP" || k.0 == "UDP"))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        logged.len() > 50 && !denied.is_empty(),
        "{} allowed, {} denied",
        logged.len(),
        denied.len()
    );
    // C/E counters sum exactly to the flows' totals; denied flows only begin.
    assert_eq!(sums, logged);
    assert!(denied.iter().all(|k| begins.contains(k) && !sums.contains_key(k)));
    assert!(logged.keys().all(|k| begins.contains(k)));
    // And to tshark's dissection of the same packets.
    // Each direction on its own: initiator -> responder as the tuple's
    // source -> destination, and back (a flow may have no return packets).
    let ts = tshark_totals(CAPTURE);
    for (k, t) in &logged {
        let p = if k.0 == "TCP" { 6 } else { 17 };
        let fwd = ts
            .get(&(p, k.1.clone(), k.2, k.3.clone(), k.4))
            .copied()
            .unwrap_or_else(|| panic!("{k:?}: tshark saw no packet from the initiator"));
        let rev = ts.get(&(p, k.3.clone(), k.4, k.1.clone(), k.2)).copied().unwrap_or((0, 0));
        assert_eq!((t.pkts_fwd, t.bytes_fwd), fwd, "{k:?} initiator -> responder");
        assert_eq!((t.pkts_rev, t.bytes_rev), rev, "{k:?} responder -> initiator");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With an active timeout shorter than the flows, every allowed flow still
/// ends in exactly one `E` (one that goes quiet after a cut too: the cut is
/// a `C`, the end comes later), and its C/E counters add up to its totals.
#[test]
fn active_timeout_cuts_keep_one_end_per_flow() {
    let dir = tmpdir("nsg-active");
    let ev = evaluate(&["--flow-logs", dir.to_str().unwrap(), "--active-timeout", "1"]);
    let mut ends: BTreeMap<Key, u32> = BTreeMap::new();
    let mut continuing = 0;
    let mut sums: BTreeMap<Key, Totals> = BTreeMap::new();
    for f in pt1h_files(&dir) {
        for rec in read_file(&f).unwrap_or_else(|e| panic!("{e}")).records {
            let FlowLogRecord::Nsg(r) = rec else { panic!("not an NSG record") };
            for (_, _, t) in r.tuples() {
                let k = nsg_key(t);
                match t.state {
                    Some(NsgFlowState::End) => *ends.entry(k.clone()).or_default() += 1,
                    Some(NsgFlowState::Continuing) => continuing += 1,
                    _ => continue,
                }
                let c = t.counters.unwrap();
                let s = sums.entry(k).or_default();
                s.add(&c);
            }
        }
    }
    assert!(continuing > 10, "the 1 s active timeout cut only {continuing} records");
    // The same flows without cuts: one row per flow.
    let whole = evaluate(&[]);
    let allowed: Vec<(&Key, &Totals)> = whole
        .flows
        .iter()
        .filter(|(k, (a, _))| a == "Allow" && (k.0 == "TCP" || k.0 == "UDP"))
        .map(|(k, (_, t))| (k, t))
        .collect();
    assert!(allowed.len() > 50);
    for (k, t) in allowed {
        assert_eq!(ends.get(k), Some(&1), "{k:?}: E tuples");
        assert_eq!(sums.get(k), Some(t), "{k:?}: C/E counters against the flow's totals");
    }
    // The cut rows of `evaluate` add up to the same totals.
    for (k, (a, t)) in &ev.flows {
        assert_eq!(whole.flows.get(k), Some(&(a.clone(), *t)), "{k:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nsg_flow_logs_version_1() {
    let dir = tmpdir("nsg-v1");
    evaluate(&["--flow-logs", dir.to_str().unwrap(), "--flow-log-version", "1"]);
    let files = pt1h_files(&dir);
    assert!(!files.is_empty());
    for f in files {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for r in doc["records"].as_array().unwrap() {
            assert_eq!(r["properties"]["Version"], 1);
            for g in r["properties"]["flows"].as_array().unwrap() {
                for t in g["flows"][0]["flowTuples"].as_array().unwrap() {
                    assert_eq!(t.as_str().unwrap().split(',').count(), 8, "{t}");
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn vnet_flow_logs_match_flows_and_nsg_logs() {
    let dir = tmpdir("vnet");
    let nsg_dir = dir.join("nsg");
    let vnet_dir = dir.join("vnet");
    // The corpus capture has only TCP and UDP: a second, synthesized capture
    // adds allowed ICMP and ICMPv6 flows (pings inside the VNet).
    use netwatch_capture::synth::Synth;
    let mut g = Synth::new();
    let t0 = 1_795_860_000i64 * 1_000_000_000;
    g.icmp_echo(t0, "10.0.2.4".parse().unwrap(), "10.1.1.4".parse().unwrap(), 7, 4, true);
    g.icmp_echo(
        t0 + 10_000_000_000,
        "fd00:1:0:1::4".parse().unwrap(),
        "fd00:1:0:1::5".parse().unwrap(),
        9,
        3,
        true,
    );
    let icmp = dir.join("icmp.pcap");
    g.write_pcap(std::fs::File::create(&icmp).unwrap()).unwrap();
    let (n, v) = (nsg_dir.to_str().unwrap(), vnet_dir.to_str().unwrap());
    let ev = evaluate_files(
        &[
            "--local",
            "10.1.1.4/32",
            "--local",
            "fd00:1:0:1::4/128",
            "--flow-logs",
            n,
            "--vnet-flow-logs",
            v,
            "--flow-log-target",
            "subnet",
        ],
        &[CAPTURE, icmp.to_str().unwrap()],
    );
    let files = pt1h_files(&vnet_dir);
    assert!(!files.is_empty());
    let mut sums: BTreeMap<Key, Totals> = BTreeMap::new();
    let mut decisions: BTreeMap<Key, char> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&vnet_dir).unwrap().to_string_lossy().to_string();
        assert!(
            rel.starts_with("insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/6F8C3A2E-1B4D-4E7F-9A0B-2C5D8E1F3A40/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_WESTEUROPE/FLOWLOGS/VNET-WEB-SNET-WEB-FLOWLOG/y="),
            "{rel}"
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        check_vnet_structure(&doc);
        for r in doc["records"].as_array().unwrap() {
            assert!(r["targetResourceID"].as_str().unwrap().ends_with("/subnets/snet-web"));
        }
        for rec in read_file(f).unwrap_or_else(|e| panic!("{e}")).records {
            let FlowLogRecord::Vnet(r) = rec else { panic!("not a VNet record") };
            for (_, _, t) in r.tuples() {
                {
                    {
                        let proto = match t.protocol {
                            6 => "TCP".to_string(),
                            17 => "UDP".to_string(),
                            1 => "ICMP".to_string(),
                            58 => "ICMPv6".to_string(),
                            n => n.to_string(),
                        };
                        let k: Key = (proto, t.src.to_string(), t.src_port, t.dst.to_string(), t.dst_port);
                        match t.state {
                            VnetFlowState::Begin => {
                                decisions.entry(k).or_insert('A');
                            }
                            VnetFlowState::Denied => {
                                decisions.insert(k, 'D');
                            }
                            VnetFlowState::Continuing | VnetFlowState::End => {
                                let s = sums.entry(k).or_default();
                                let c = t.counters.expect("C and E tuples carry counters");
                                s.add(&c);
                            }
                        }
                    }
                }
            }
        }
    }
    // Every evaluated (non-transit) flow, any protocol, with its decision.
    let evaluated: BTreeMap<Key, char> = ev
        .flows
        .iter()
        .filter(|(_, (a, _))| a != "Transit")
        .map(|(k, (a, _))| (k.clone(), if a == "Allow" { 'A' } else { 'D' }))
        .collect();
    assert_eq!(decisions, evaluated);
    let allowed: BTreeMap<Key, Totals> = ev
        .flows
        .iter()
        .filter(|(_, (a, _))| a == "Allow")
        .map(|(k, (_, t))| (k.clone(), *t))
        .collect();
    assert_eq!(sums, allowed);
    assert!(
        allowed.keys().any(|k| k.0 == "ICMP") && allowed.keys().any(|k| k.0 == "ICMPv6"),
        "{allowed:?}"
    );

    // The NSG flow logs of the same run describe the same TCP/UDP flows and decisions.
    let mut nsg_decisions: BTreeMap<Key, char> = BTreeMap::new();
    for f in pt1h_files(&nsg_dir) {
        for rec in read_file(&f).unwrap().records {
            let FlowLogRecord::Nsg(r) = rec else { panic!() };
            for (_, _, t) in r.tuples() {
                {
                    let k = nsg_key(t);
                    nsg_decisions.insert(k, if t.decision == netwatch_rules::Access::Allow { 'A' } else { 'D' });
                }
            }
        }
    }
    let vnet_tcp_udp: BTreeMap<Key, char> = decisions.into_iter().filter(|(k, _)| k.0 == "TCP" || k.0 == "UDP").collect();
    assert_eq!(nsg_decisions, vnet_tcp_udp);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Killing the process mid-run (SIGKILL, at several points, appending to the
/// same directory) never leaves a flow-log file that does not parse.
#[test]
fn killed_runs_leave_parsable_files() {
    use netwatch_capture::synth::{Synth, TcpEnd};
    let dir = tmpdir("kill");
    // A capture over 40 minutes of flow time, so minutes get written as it goes.
    let mut g = Synth::new();
    let t0 = 1_795_860_000i64 * 1_000_000_000;
    for i in 0..2400i64 {
        let client: std::net::SocketAddr = format!("52.178.{}.{}:{}", i / 250, i % 250 + 1, 40000 + i % 1000).parse().unwrap();
        g.tcp_session(
            t0 + i * 1_000_000_000,
            client,
            "10.1.1.4:443".parse().unwrap(),
            &[(300, 2000)],
            TcpEnd::Fin,
        );
    }
    let mut pcap = Vec::new();
    g.write_pcap(&mut pcap).unwrap();
    let out = dir.join("logs");
    let mut args: Vec<String> = [&["evaluate"], common::DEMO_WEB1, &["--flow-logs"]]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(out.to_string_lossy().into_owned());
    args.push("-".into());
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_netwatch"))
            .args(&args)
            .current_dir(common::root())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    for (run, cut) in [pcap.len() / 5, pcap.len() / 2, pcap.len() * 4 / 5].into_iter().enumerate() {
        let mut child = spawn();
        let mut stdin = child.stdin.take().unwrap();
        // Feed part of the capture, give it time to write, then kill it mid-stream.
        stdin.write_all(&pcap[..cut]).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300 + 100 * run as u64));
        child.kill().unwrap();
        let _ = child.wait();
        drop(stdin);
        // A kill between a temporary file's creation and its rename leaves
        // it (hidden, `.PT1H.json.PID.N.tmp`); the hour files all parse.
        for f in pt1h_files(&out) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(".PT1H.json.") && name.ends_with(".tmp") {
                continue;
            }
            assert_eq!(name, "PT1H.json", "{}", f.display());
            let text = std::fs::read_to_string(&f).unwrap();
            serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("run {run}: {} does not parse: {e}", f.display()));
            read_file(&f).unwrap_or_else(|e| panic!("run {run}: {e}"));
        }
    }
    assert!(
        !pt1h_files(&out).is_empty(),
        "the killed runs wrote nothing: the test proves nothing"
    );
    // A temporary file a killed run left (one is planted in case no kill
    // landed mid-write) goes when a later run writes that hour's file.
    let hour_dir = pt1h_files(&out)[0].parent().unwrap().to_path_buf();
    let stale = hour_dir.join(format!(".PT1H.json.{}.0.tmp", u32::MAX - 1));
    std::fs::write(&stale, b"{\"records\":[{\"ti").unwrap();
    let mut child = spawn();
    child.stdin.take().unwrap().write_all(&pcap).unwrap();
    assert!(child.wait().unwrap().success());
    for f in pt1h_files(&out) {
        assert_eq!(f.file_name().unwrap(), "PT1H.json", "left after a complete run: {}", f.display());
        read_file(&f).unwrap_or_else(|e| panic!("after a complete run: {e}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `netwatch flow-logs read` reads Azure's real samples (both formats, both
/// layouts) and prints one JSON object per tuple.
#[test]
fn flow_logs_read_azure_samples() {
    let dir = common::corpus("azure");
    let o = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["flow-logs", "read"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // SOURCES.md: NSG sample 11 tuples + 1 NDJSON; VNet sample 19 + 2 NDJSON.
    assert_eq!(lines.len(), 33);
    assert_eq!(lines.iter().filter(|v| v["format"] == "NSG v2").count(), 12);
    assert_eq!(lines.iter().filter(|v| v["format"] == "VNet v4").count(), 21);
    assert!(String::from_utf8_lossy(&o.stderr).contains("4 file(s), 5 record(s), 33 tuple(s)"));
    // Azure's epoch fields, and the same instant in RFC 3339 UTC.
    for v in &lines {
        let ms = v["timestamp"]
            .as_i64()
            .map(|s| s * 1000)
            .or(v["timestampMs"].as_i64())
            .expect("epoch time");
        let t = v["tupleTime"].as_str().expect("tupleTime");
        assert_eq!(netwatch_flowlogs::time::parse_rfc3339(t), Some(ms * 1_000_000), "{v}");
        assert!(t.ends_with('Z') && t.len() == 24, "{t}");
    }
    // The same tuples as CSV and as a table, in the same order.
    let read = |fmt: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_netwatch"))
            .args(["flow-logs", "read", "-o", fmt])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let csv = read("csv");
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 34, "{csv}");
    assert_eq!(rows[0][0], "time");
    let table = read("table");
    let trows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(trows.len(), 34, "{table}");
    for ((v, r), t) in lines.iter().zip(&rows[1..]).zip(&trows[1..]) {
        assert_eq!(r.len(), 14, "{r:?}");
        assert_eq!(v["tupleTime"].as_str(), Some(r[0]));
        assert_eq!(t[0], r[0]);
        assert_eq!(v["rule"].as_str(), Some(r[2]));
        let src = format!("{}:{}", v["source"].as_str().unwrap(), v["sourcePort"]);
        assert_eq!(r[8], src);
        let sent = v["packetsSourceToDestination"].as_u64().or(v["packetsSent"].as_u64());
        assert_eq!(r[10], sent.map(|n| n.to_string()).unwrap_or_default(), "{v}");
    }
}

/// A symbolic link back up the tree does not make `flow-logs read` read
/// the same files again (nor loop until the OS gives up).
#[test]
fn flow_logs_read_follows_a_loop_once() {
    let dir = tmpdir("loop");
    let src = common::corpus("azure");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    // Both links lead back to `dir` itself.
    std::os::unix::fs::symlink(".", dir.join("self")).unwrap();
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("nested").join("up")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["flow-logs", "read", "--summary"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "4 file(s), 5 record(s), 33 tuple(s)\n", "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--local` with host bits set is refused (a usage error), as tcpdump
/// refuses `net 10.0.0.5/24`, naming both readings.
#[test]
fn local_prefix_with_host_bits_is_an_error() {
    let mut args = vec!["evaluate"];
    args.extend_from_slice(ENV);
    args.extend_from_slice(&["--local", "10.0.0.5/24", CAPTURE]);
    let o = netwatch(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "a usage error: {err}");
    assert!(
        err.starts_with("error: ") && err.contains("10.0.0.0/24") && err.contains("host bits"),
        "{err}"
    );
}

/// A region given as the portal shows it names the network watcher by its
/// programmatic name, as Azure does (`NETWORKWATCHER_WESTEUROPE`).
#[test]
fn vnet_flow_log_region_display_name() {
    let dir = tmpdir("region");
    let out = dir.join("vnet");
    let mut args = vec!["evaluate"];
    args.extend_from_slice(ENV);
    let out_s = out.to_str().unwrap().to_string();
    args.extend_from_slice(&["--vnet-flow-logs", &out_s, "--flow-log-region", "West Europe", CAPTURE]);
    let o = netwatch(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = pt1h_files(&out);
    assert!(!files.is_empty());
    for f in &files {
        let p = f.to_string_lossy();
        assert!(p.contains("/NETWORKWATCHER_WESTEUROPE/FLOWLOGS/"), "{p}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two captures of nic-web1 over the same six minutes (10:58:30 to 11:04:30,
/// across an hour), `a` and `b`, written to `dir`: HTTPS sessions every 20 s
/// in both (`b` 10 s later, from other clients), and in `b` SSH attempts
/// from the Internet every 30 s (denied by the subnet NSG). Returns their
/// paths and the first packet's time (ns).
fn overlapping_captures(dir: &Path) -> (PathBuf, PathBuf, i64) {
    use netwatch_capture::synth::{Synth, TcpEnd};
    let t0 = 1_767_265_110i64 * 1_000_000_000; // 2026-01-01T10:58:30Z
    let server: std::net::SocketAddr = "10.1.1.4:443".parse().unwrap();
    let (mut a, mut b) = (Synth::new(), Synth::new());
    for k in 0..18i64 {
        let at = t0 + k * 20_000_000_000;
        let client = |net: u8| -> std::net::SocketAddr { format!("52.{net}.0.{}:{}", k + 1, 40000 + k).parse().unwrap() };
        a.tcp_session(at, client(178), server, &[(300, 2000)], TcpEnd::Fin);
        b.tcp_session(at + 10_000_000_000, client(179), server, &[(200, 1500)], TcpEnd::Fin);
    }
    for k in 0..12i64 {
        let client: std::net::SocketAddr = format!("198.51.100.{}:{}", k + 1, 50000 + k).parse().unwrap();
        b.tcp_unanswered(t0 + 5_000_000_000 + k * 30_000_000_000, client, "10.1.1.4:22".parse().unwrap(), 1);
    }
    let (pa, pb) = (dir.join("a.pcap"), dir.join("b.pcap"));
    for (g, p) in [(a, &pa), (b, &pb)] {
        let mut bytes = Vec::new();
        g.write_pcap(&mut bytes).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    (pa, pb, t0)
}

/// One record of a written hour file: minute, `time`, and the tuples under
/// each (rule, MAC) or (ACL, rule), in file order.
type MinuteRecord = (i64, String, BTreeMap<(String, String), Vec<String>>);

fn minute_records(file: &Path) -> Vec<MinuteRecord> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let time = r["time"].as_str().unwrap().to_string();
            let minute = netwatch_flowlogs::time::parse_rfc3339(&time).unwrap().div_euclid(60_000_000_000);
            let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
            let mut add = |k: (&Value, &Value), tuples: &Value| {
                let k = (k.0.as_str().unwrap().to_string(), k.1.as_str().unwrap().to_string());
                let e = groups.entry(k).or_default();
                assert!(e.is_empty(), "{file:?} {time}: a rule twice in one record");
                e.extend(tuples.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()));
            };
            if r.get("properties").is_some() {
                for f in r["properties"]["flows"].as_array().unwrap() {
                    for m in f["flows"].as_array().unwrap() {
                        add((&f["rule"], &m["mac"]), &m["flowTuples"]);
                    }
                }
            } else {
                for a in r["flowRecords"]["flows"].as_array().unwrap() {
                    for g in a["flowGroups"].as_array().unwrap() {
                        add((&a["aclID"], &g["rule"]), &g["flowTuples"]);
                    }
                }
            }
            (minute, time, groups)
        })
        .collect()
}

/// Every hour file under `dir`, by path below it.
fn hour_files(dir: &Path) -> BTreeMap<PathBuf, Vec<MinuteRecord>> {
    pt1h_files(dir)
        .into_iter()
        .map(|f| (f.strip_prefix(dir).unwrap().to_path_buf(), minute_records(&f)))
        .collect()
}

/// Captures whose times overlap, given to one `evaluate`: the second starts
/// a new flow table with an earlier clock after the first's minutes were
/// written. Each hour file still has one record per NSG (or flow log) and
/// minute, in time order (spec §7.1), holding the tuples of both captures
/// under their rules, in time order: what each capture writes on its own,
/// merged.
#[test]
fn overlapping_captures_give_one_record_per_minute() {
    let dir = tmpdir("overlap");
    let (a, b, _) = overlapping_captures(&dir);
    let run = |out: &str, captures: &[&Path]| -> BTreeMap<PathBuf, Vec<MinuteRecord>> {
        let out = dir.join(out);
        let mut args: Vec<String> = [common::DEMO_WEB1, &["--flow-logs"]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([
            out.join("nsg").display().to_string(),
            "--vnet-flow-logs".into(),
            out.join("vnet").display().to_string(),
        ]);
        args.extend(captures.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = netwatch(&["evaluate"].iter().copied().chain(args).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for f in pt1h_files(&out) {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            if f.to_string_lossy().contains("insights-logs-networksecuritygroupflowevent") {
                check_nsg_structure(&doc);
            } else {
                check_vnet_structure(&doc);
            }
        }
        hour_files(&out)
    };
    let both = run("both", &[&a, &b]);
    let (only_a, only_b) = (run("a", &[&a]), run("b", &[&b]));
    // Both NSGs, both formats, both hours.
    assert_eq!(both.len(), 6, "{:?}", both.keys().collect::<Vec<_>>());
    let mut want = only_a.clone();
    for (path, records) in only_b {
        let have = want.entry(path).or_default();
        for (minute, time, groups) in records {
            match have.iter_mut().find(|r| r.0 == minute) {
                Some(r) => {
                    r.1 = r.1.clone().max(time);
                    for (k, tuples) in groups {
                        r.2.entry(k).or_default().extend(tuples);
                    }
                }
                None => have.push((minute, time, groups)),
            }
        }
        have.sort_by_key(|r| r.0);
    }
    for (path, records) in &both {
        let minutes: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert!(minutes.windows(2).all(|w| w[0] < w[1]), "{path:?}: record minutes {minutes:?}");
    }
    // The same tuples in the same records (a rule's tuples of one time in
    // either order: both captures' flows end at the same times).
    let sorted = |files: &BTreeMap<PathBuf, Vec<MinuteRecord>>| -> BTreeMap<PathBuf, Vec<MinuteRecord>> {
        let mut files = files.clone();
        for r in files.values_mut().flatten() {
            r.2.values_mut().for_each(|t| t.sort());
        }
        files
    };
    assert_eq!(sorted(&both), sorted(&want));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The records of an overlapping capture's minutes are written as its clock
/// moves on, not held until it passes the previous capture's end: memory
/// stays bounded however long the captures are.
#[test]
fn overlapping_captures_are_written_minute_by_minute() {
    use netwatch::watcher::flow_logging::{FlowLogOptions, FlowLogger};
    use netwatch::watcher::replay::{replay, CaptureInput, ReplayOptions};
    use netwatch::watcher::verdicts::{prepare_nic, VerdictRecords};
    let dir = tmpdir("overlap-bounded");
    let (a, b, t0) = overlapping_captures(&dir);
    let root = common::root();
    let mut env = netwatch::Environment::load(&[root.join("demo/hub-spoke")]).unwrap();
    env.load_service_tags(&root.join("demo/ServiceTags_Demo.json")).unwrap();
    let (view, evaluator) = prepare_nic(&env, "nic-web1", None).unwrap();
    let out = dir.join("logs");
    let opts = FlowLogOptions {
        nsg_dir: Some(out.clone()),
        ..FlowLogOptions::default()
    };
    let logger = FlowLogger::new(&view, &evaluator, &opts).unwrap();
    let mut records = VerdictRecords::new(Some(&evaluator), Some(logger), None);
    // b's first HTTPS session begins at 10:58:40 (minute m0); once b's clock
    // is at 11:01, that minute must be on disk with b's tuple in it.
    let m0_file = |out: &Path| pt1h_files(out).into_iter().find(|f| f.to_string_lossy().contains("h=10"));
    let mut checked = false;
    replay(
        &[CaptureInput::File(a), CaptureInput::File(b)],
        &ReplayOptions::default(),
        |t| evaluator.evaluate(t),
        |r| {
            records.record(&r);
            let from_b = r.tuple.src.to_string().starts_with("52.179.");
            if from_b && !checked && r.at_ns >= t0 + 150_000_000_000 {
                checked = true;
                let f = m0_file(&out).expect("the h=10 file");
                let text = std::fs::read_to_string(f).unwrap();
                assert!(
                    text.contains("52.179.0.1,10.1.1.4,40000,443,T,I,A,B"),
                    "b's 10:58:40 tuple not written yet: {text}"
                );
            }
        },
    )
    .unwrap();
    assert!(checked, "b's records never reached 11:01");
    records.finish().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
