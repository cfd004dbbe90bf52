//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::fs::File;
use std::io::BufWriter;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use netwatch::Environment;
use netwatch_capture::file::{CaptureReader, PcapWriter};

/// Runs the `netwatch` binary in the repository root.
pub fn netwatch(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run netwatch")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the shared corpus (never copied into the repo).
pub fn corpus(rel: &str) -> PathBuf {
    root().join("../shared/corpus").join(rel)
}

/// The real Azure Public service tags download from the corpus.
pub fn real_service_tags() -> PathBuf {
    let p = corpus("azure/ServiceTags_Public_20251028.json.gz");
    assert!(
        p.exists(),
        "corpus file {} is missing: the tests need ../shared/corpus beside the repository",
        p.display()
    );
    p
}

/// The hub-and-spoke environment in the REST shape (the bundled demo).
pub fn rest_env() -> Environment {
    let mut env = Environment::load(&[root().join("demo/hub-spoke")]).expect("load REST-shape environment");
    env.load_service_tags(&real_service_tags()).expect("load service tags");
    env
}

/// The same environment in the az CLI shape.
pub fn cli_env() -> Environment {
    let mut env = Environment::load(&[root().join("tests/data/hub-spoke-cli")]).expect("load az-CLI-shape environment");
    env.load_service_tags(&real_service_tags()).expect("load service tags");
    env
}

/// The bundled demo environment with its service tags, and its NIC
/// nic-web1: the arguments most commands take before their own.
pub const DEMO_WEB1: &[&str] = &[
    "--resources",
    "demo/hub-spoke",
    "--service-tags",
    "demo/ServiceTags_Demo.json",
    "--nic",
    "nic-web1",
];

/// The demo environment with nic-web1's NSG replaced by a stricter copy (a
/// later file wins) that denies HTTP to half the Internet, so both NSGs
/// decide some flows of the corpus capture; the NIC taken as 10.0.0.6.
/// `evaluate` arguments before the capture files.
pub const STRICT_WEB_NIC: &[&str] = &[
    "--resources",
    "demo/hub-spoke",
    "--resources",
    "tests/data/nsg-web-nic-strict.json",
    "--service-tags",
    "demo/ServiceTags_Demo.json",
    "--nic",
    "nic-web1",
    "--local",
    "10.0.0.6/32",
];

/// Splits capture `src` into two pcaps in `dir`, `a.pcap` with its first
/// `at` packets and `b.pcap` with the rest; also returns the packet count.
pub fn split_capture(src: &Path, at: u64, dir: &Path) -> (PathBuf, PathBuf, u64) {
    let mut r = CaptureReader::open(src).expect("corpus capture opens");
    let link = r.interfaces()[0].link_type;
    let (a, b) = (dir.join("a.pcap"), dir.join("b.pcap"));
    let writer = |p: &Path| PcapWriter::new(BufWriter::new(File::create(p).expect("create")), link, 262_144, true).expect("header");
    let (mut wa, mut wb) = (writer(&a), writer(&b));
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.expect("packet");
        let w = if n < at { &mut wa } else { &mut wb };
        w.write_packet(p.timestamp_ns, p.orig_len, p.data).expect("write");
        n += 1;
    }
    wa.flush().expect("flush");
    wb.flush().expect("flush");
    (a, b, n)
}

/// Writes `path`: a capture of `flows` one-datagram UDP flows from
/// 10.0.0.0 + i to 192.0.2.1:53, `spacing_ns` apart.
pub fn udp_flows_capture(path: &Path, flows: u32, spacing_ns: i64) {
    let mut synth = netwatch_capture::synth::Synth::new();
    for i in 0..flows {
        let a = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | i), 40_000));
        let b = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 53));
        synth.udp(1_000_000_000 + i64::from(i) * spacing_ns, a, b, &[(true, 60)]);
    }
    synth
        .write_pcap(BufWriter::new(File::create(path).expect("create")))
        .expect("write");
}

/// An IPv4 packet (header without options, checksum 0, TTL 64) around
/// `payload`: `flags_frag` is the flags and fragment offset field.
pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, flags_frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend((20 + payload.len() as u16).to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(flags_frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend(payload);
    h
}

/// The demo's route table `name` (rg-spokes), as its JSON.
pub fn demo_route_table(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("demo/hub-spoke/rg-spokes/routeTables.json")).expect("read the demo route tables");
    let list: serde_json::Value = serde_json::from_str(&text).expect("demo route tables are JSON");
    list["value"]
        .as_array()
        .and_then(|v| v.iter().find(|t| t["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("the demo has no route table {name}"))
}

/// The demo's rt-web with routes added up to `count` (each to a /24 of
/// 10.100.0.0/14, next hop None), written to `dir`; its path.
pub fn rt_web_with_routes(dir: &Path, count: usize) -> PathBuf {
    let mut rt = demo_route_table("rt-web");
    let routes = rt["properties"]["routes"].as_array_mut().expect("rt-web has routes");
    for i in routes.len()..count {
        routes.push(serde_json::json!({
            "name": format!("pad-{i}"),
            "properties": {"addressPrefix": format!("10.{}.{}.0/24", 100 + i / 256, i % 256), "nextHopType": "None"}
        }));
    }
    let path = dir.join(format!("rt-web-{count}-routes.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&rt).expect("JSON")).expect("write the route table");
    path
}
