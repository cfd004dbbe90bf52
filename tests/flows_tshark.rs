//! `netwatch flows` against tshark: for every capture in the corpus, the TCP
//! and UDP flows (count, packets per flow, IP bytes per direction) equal an
//! aggregation of tshark's per-packet dissection of the same file.
//!
//! tshark runs with IP reassembly off; non-first fragments are attributed to
//! their first fragment's flow by IP id, as netwatch does (also those
//! that come up to 30 s before it). Flows are compared
//! per conversation (canonical 5-tuple) with timeouts longer than any
//! capture, so both sides see one flow per 5-tuple.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use netwatch::watcher::replay::{replay, CaptureInput, ReplayOptions};
use netwatch_flowlogs::{FlowRecordKind, FlowTableConfig};

type Endpoint = (IpAddr, u16);
/// (protocol, lower endpoint, higher endpoint).
type ConvKey = (u8, Endpoint, Endpoint);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Conv {
    /// Packets and bytes from the lower endpoint, then from the higher.
    lo_packets: u64,
    lo_bytes: u64,
    hi_packets: u64,
    hi_bytes: u64,
}

fn key(proto: u8, a: Endpoint, b: Endpoint) -> (ConvKey, bool) {
    if a <= b {
        ((proto, a, b), true)
    } else {
        ((proto, b, a), false)
    }
}

fn add(map: &mut BTreeMap<ConvKey, Conv>, proto: u8, a: Endpoint, b: Endpoint, packets: u64, bytes: u64) {
    let (k, from_lo) = key(proto, a, b);
    let c = map.entry(k).or_default();
    if from_lo {
        c.lo_packets += packets;
        c.lo_bytes += bytes;
    } else {
        c.hi_packets += packets;
        c.hi_bytes += bytes;
    }
}

fn first(s: &str) -> &str {
    s.split(',').next().unwrap_or("")
}

const FIELDS: &[&str] = &[
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "ip.len",
    "ipv6.plen",
    "ipv6.opt.jumbo",
    "ip.id",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.fraghdr.ident",
    "ipv6.fraghdr.offset",
    "ip.proto",
    "ipv6.fraghdr.nxt",
    "frame.time_epoch",
];

/// tshark's view: conversations of the outermost IP layer's TCP/UDP.
fn tshark_convs(file: &Path) -> BTreeMap<ConvKey, Conv> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args([
            "-o",
            "ip.defragment:FALSE",
            "-o",
            "ipv6.defragment:FALSE",
            "-o",
            "tcp.analyze_sequence_numbers:FALSE",
            "-T",
            "fields",
            "-E",
            "separator=/t",
        ])
        .args(FIELDS.iter().flat_map(|f| ["-e", f]))
        .output()
        .expect("tshark is not installed: run `make test`, which installs it (Debian package tshark)");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = BTreeMap::new();
    // First fragments' ports by (src, dst, ip id), to attribute later fragments.
    let mut frag_ports: HashMap<FragKey, (u8, u16, u16)> = HashMap::new();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // First fragments and their times, found ahead: a later fragment that
    // comes before its first one waits for it up to 30 s.
    let mut firsts_ahead: HashMap<FragKey, (u8, u16, u16, f64)> = HashMap::new();
    for pass in 0..2 {
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let g = |name: &str| f.get(FIELDS.iter().position(|x| *x == name).unwrap()).copied().unwrap_or("");
            let time: f64 = g("frame.time_epoch").parse().unwrap_or(0.0);
            if pass == 0 {
                let protos: Vec<&str> = g("frame.protocols").split(':').collect();
                let Some(ip_at) = protos.iter().position(|p| *p == "ip" || *p == "ipv6") else {
                    continue;
                };
                let v6 = protos[ip_at] == "ipv6";
                let (src, dst, id, off, is_frag) = if v6 {
                    let id = first(g("ipv6.fraghdr.ident")).to_string();
                    let off: u64 = first(g("ipv6.fraghdr.offset")).parse().unwrap_or(0);
                    let frag = !id.is_empty();
                    (first(g("ipv6.src")), first(g("ipv6.dst")), id, off, frag)
                } else {
                    let off: u64 = first(g("ip.frag_offset")).parse().unwrap_or(0);
                    let mf = matches!(first(g("ip.flags.mf")), "1" | "True" | "true");
                    (first(g("ip.src")), first(g("ip.dst")), first(g("ip.id")).to_string(), off, mf)
                };
                let (Ok(src), Ok(dst)) = (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) else {
                    continue;
                };
                let ports = match protos[ip_at + 1..].iter().find(|p| !p.starts_with("ipv6.") && **p != "ah").copied() {
                    Some("tcp") => Some((6u8, first(g("tcp.srcport")), first(g("tcp.dstport")))),
                    Some("udp") => Some((17u8, first(g("udp.srcport")), first(g("udp.dstport")))),
                    _ => None,
                };
                if let (true, 0, Some((p, sp, dp))) = (is_frag, off, ports) {
                    if let (Ok(sp), Ok(dp)) = (sp.parse::<u16>(), dp.parse::<u16>()) {
                        firsts_ahead.entry((src, dst, id)).or_insert((p, sp, dp, time));
                    }
                }
                continue;
            }
            process_line(&f, time, &mut map, &mut frag_ports, &firsts_ahead);
        }
    }
    map
}

/// A fragmented datagram: source, destination, IP identification.
type FragKey = (IpAddr, IpAddr, String);

/// One tshark line of [`tshark_convs`]' second pass.
fn process_line(
    f: &[&str],
    time: f64,
    map: &mut BTreeMap<ConvKey, Conv>,
    frag_ports: &mut HashMap<FragKey, (u8, u16, u16)>,
    firsts_ahead: &HashMap<FragKey, (u8, u16, u16, f64)>,
) {
    {
        let g = |name: &str| f.get(FIELDS.iter().position(|x| *x == name).unwrap()).copied().unwrap_or("");
        let protos: Vec<&str> = g("frame.protocols").split(':').collect();
        let Some(ip_at) = protos.iter().position(|p| *p == "ip" || *p == "ipv6") else {
            return;
        };
        let v6 = protos[ip_at] == "ipv6";
        let (src, dst) = if v6 {
            (first(g("ipv6.src")), first(g("ipv6.dst")))
        } else {
            (first(g("ip.src")), first(g("ip.dst")))
        };
        let (Ok(src), Ok(dst)) = (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) else {
            return;
        };
        // The outermost IP packet's length.
        let len: u64 = if v6 {
            let plen: u64 = first(g("ipv6.plen")).parse().unwrap_or(0);
            if plen == 0 {
                40 + first(g("ipv6.opt.jumbo")).parse::<u64>().unwrap_or(0)
            } else {
                40 + plen
            }
        } else {
            first(g("ip.len")).parse().unwrap_or(0)
        };
        // The transport right after the outermost IP layer and its extension headers.
        // (AH is walked like an extension header; what follows it decides.)
        let transport = protos[ip_at + 1..]
            .iter()
            .find(|p| !p.starts_with("ipv6.") && **p != "ah")
            .copied()
            .unwrap_or("");
        let (frag_id, later_fragment, first_fragment) = if v6 {
            let id = first(g("ipv6.fraghdr.ident")).to_string();
            let off: u64 = first(g("ipv6.fraghdr.offset")).parse().unwrap_or(0);
            (id.clone(), !id.is_empty() && off > 0, !id.is_empty() && off == 0)
        } else {
            let off: u64 = first(g("ip.frag_offset")).parse().unwrap_or(0);
            let mf = matches!(first(g("ip.flags.mf")), "1" | "True" | "true");
            (first(g("ip.id")).to_string(), off > 0, off == 0 && mf)
        };
        if later_fragment {
            let key = (src, dst, frag_id);
            match frag_ports.get(&key) {
                Some(&(p, sp, dp)) => add(map, p, (src, sp), (dst, dp), 1, len),
                None => match firsts_ahead.get(&key) {
                    // Before its first fragment (out of order): it waits
                    // for it up to 30 s.
                    Some(&(p, sp, dp, t)) if t >= time && t - time <= 30.0 => add(map, p, (src, sp), (dst, dp), 1, len),
                    _ => {
                        // Its first never came in time: netwatch counts it
                        // in a flow with ports 0.
                        let p: u8 = first(if v6 { g("ipv6.fraghdr.nxt") } else { g("ip.proto") }).parse().unwrap_or(0);
                        if matches!(p, 6 | 17) {
                            add(map, p, (src, 0), (dst, 0), 1, len);
                        }
                    }
                },
            }
            return;
        }
        let (proto, sp, dp) = match transport {
            "tcp" => (6u8, first(g("tcp.srcport")), first(g("tcp.dstport"))),
            "udp" => (17u8, first(g("udp.srcport")), first(g("udp.dstport"))),
            _ => return,
        };
        let (Ok(sp), Ok(dp)) = (sp.parse::<u16>(), dp.parse::<u16>()) else {
            return;
        };
        if first_fragment {
            frag_ports.insert((src, dst, frag_id), (proto, sp, dp));
        }
        add(map, proto, (src, sp), (dst, dp), 1, len);
    }
}

/// netwatch's view, through the library.
fn netwatch_convs(file: &Path) -> BTreeMap<ConvKey, Conv> {
    let year = 366 * 24 * 3600 * 1_000_000_000i64;
    let opts = ReplayOptions {
        decap: false,
        table: FlowTableConfig {
            tcp_idle_ns: year,
            udp_idle_ns: year,
            icmp_idle_ns: year,
            other_idle_ns: year,
            ..FlowTableConfig::default()
        },
    };
    let mut map = BTreeMap::new();
    replay(
        &[CaptureInput::File(file.to_path_buf())],
        &opts,
        |_| (),
        |r| {
            if !matches!(r.kind, FlowRecordKind::End(_)) || !matches!(r.tuple.protocol, 6 | 17) {
                return;
            }
            let t = r.tuple;
            add(
                &mut map,
                t.protocol,
                (t.src, t.src_port),
                (t.dst, t.dst_port),
                r.forward.packets,
                r.forward.bytes,
            );
            add(
                &mut map,
                t.protocol,
                (t.dst, t.dst_port),
                (t.src, t.src_port),
                r.reverse.packets,
                r.reverse.bytes,
            );
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // A conversation seen only one way gets a zero entry for the other way; drop empty sides.
    map.retain(|_, c| c.lo_packets + c.hi_packets > 0);
    map
}

fn corpus_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["pcap", "pcap-bulk"] {
        let d = common::corpus(dir);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: {e} (the tests need ../shared/corpus)", d.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x != "tsv"))
            .collect();
        entries.sort();
        v.extend(entries);
    }
    v
}

#[test]
fn flows_equal_tshark_on_every_corpus_capture() {
    let files = corpus_files();
    assert!(files.len() >= 63, "expected the 60 + 3 corpus captures, found {}", files.len());
    let mut failures = Vec::new();
    let (mut convs, mut packets) = (0usize, 0u64);
    for f in &files {
        let want = tshark_convs(f);
        let got = netwatch_convs(f);
        convs += want.len();
        packets += want.values().map(|c| c.lo_packets + c.hi_packets).sum::<u64>();
        if want != got {
            let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(k) != Some(v)).take(3).collect();
            let extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(k)).take(3).collect();
            failures.push(format!(
                "{}: tshark {} conversations, netwatch {}; differing {:?}; netwatch only {:?}; netwatch has {:?}",
                f.file_name().unwrap().to_string_lossy(),
                want.len(),
                got.len(),
                missing,
                extra,
                missing.iter().map(|(k, _)| got.get(k)).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(
        convs > 1000 && packets > 10_000,
        "compared {convs} conversations, {packets} packets"
    );
}
