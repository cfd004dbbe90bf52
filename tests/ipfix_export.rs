//! `--ipfix` end to end: `netwatch flows` exports a corpus capture to a real
//! `nfcapd` on a loopback port; `nfdump -r ... -o csv` shows every flow with
//! the packet and byte totals `netwatch flows` printed for it.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;

#[path = "../flowlogs/tests/support/nfcapd.rs"]
mod nfcapd;

use nfcapd::{nfdump_csv, Collector};

type Key = (String, IpAddr, u16, IpAddr, u16);

const CAPTURE: &str = "../shared/corpus/pcap-bulk/pcapplusplus__example.pcap";

/// Per flow of `netwatch flows` (TCP and UDP): forward and reverse (packets, bytes).
fn run(extra: &[&str], target: &str) -> BTreeMap<Key, [u64; 4]> {
    let mut args = vec!["flows", CAPTURE, "-o", "jsonl", "--ipfix", target];
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(&args)
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exported"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = v["protocol"].as_str().unwrap().to_string();
        if p != "TCP" && p != "UDP" {
            continue;
        }
        let k = (
            p,
            v["initiator"].as_str().unwrap().parse().unwrap(),
            v["initiatorPort"].as_u64().unwrap() as u16,
            v["responder"].as_str().unwrap().parse().unwrap(),
            v["responderPort"].as_u64().unwrap() as u16,
        );
        let e = m.entry(k).or_insert([0u64; 4]);
        for (i, f) in ["packetsSent", "bytesSent", "packetsReceived", "bytesReceived"].iter().enumerate() {
            e[i] += v[f].as_u64().unwrap();
        }
    }
    m
}

fn proto(r: &BTreeMap<String, String>) -> String {
    match r["pr"].trim() {
        "6" | "TCP" => "TCP".into(),
        "17" | "UDP" => "UDP".into(),
        p => p.to_string(),
    }
}

/// A counter column of an nfdump CSV row; a missing or unreadable one
/// fails the test (rather than counting as zero).
fn num(r: &BTreeMap<String, String>, k: &str) -> u64 {
    let v = r.get(k).unwrap_or_else(|| panic!("nfdump row without {k:?}: {r:?}"));
    v.trim().parse().unwrap_or_else(|e| panic!("nfdump {k:?} = {v:?}: {e}"))
}

fn key(r: &BTreeMap<String, String>) -> Key {
    (
        proto(r),
        r["sa"].trim().parse().unwrap(),
        r["sp"].trim().parse::<f64>().unwrap() as u16,
        r["da"].trim().parse().unwrap(),
        r["dp"].trim().parse::<f64>().unwrap() as u16,
    )
}

#[test]
fn ipfix_biflows_reach_nfcapd() {
    let mut c = Collector::start();
    let want = run(&[], &c.addr().to_string());
    let file = c.stop();
    let mut got: BTreeMap<Key, [u64; 4]> = BTreeMap::new();
    for r in nfdump_csv(&file) {
        let k = key(&r);
        if k.0 != "TCP" && k.0 != "UDP" {
            continue;
        }
        let e = got.entry(k).or_insert([0u64; 4]);
        e[0] += num(&r, "ipkt");
        e[1] += num(&r, "ibyt");
        e[2] += num(&r, "opkt");
        e[3] += num(&r, "obyt");
    }
    assert!(want.len() > 100, "{} flows", want.len());
    assert_eq!(got, want, "collector log: {}", c.log());
}

#[test]
fn netflow_v9_records_reach_nfcapd() {
    let mut c = Collector::start();
    let want = run(&["--netflow-v9"], &c.addr().to_string());
    let file = c.stop();
    // v9 is unidirectional: fold each row into its flow's forward or reverse side.
    let mut got: BTreeMap<Key, [u64; 4]> = BTreeMap::new();
    for r in nfdump_csv(&file) {
        let k = key(&r);
        if k.0 != "TCP" && k.0 != "UDP" {
            continue;
        }
        let rev = (k.0.clone(), k.3, k.4, k.1, k.2);
        let (k, side) = if want.contains_key(&k) { (k, 0) } else { (rev, 2) };
        let e = got.entry(k).or_insert([0u64; 4]);
        e[side] += num(&r, "ipkt");
        e[side + 1] += num(&r, "ibyt");
    }
    assert!(want.len() > 100, "{} flows", want.len());
    assert_eq!(got, want, "collector log: {}", c.log());
}
