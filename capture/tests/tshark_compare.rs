//! The reader and decoder against tshark, for every valid capture of the
//! corpus (pcap/ and pcap-bulk/): same packet count, and per packet the same
//! outermost IP source / destination, protocol (IPv6: the next header after
//! the extension headers), IP length (ip.len; IPv6 40 + payload length or
//! jumbo length), TCP / UDP ports and ICMP / ICMPv6 type and code.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{capture_files, name, require_tshark, tshark_fields};
use netwatch_capture::decode::{decode, DecodeOptions};
use netwatch_capture::file::CaptureReader;

const FIELDS: &[&str] = &[
    "frame.number",
    "frame.protocols",
    "frame.encap_type",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.len",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "ipv6.plen",
    "ipv6.opt.jumbo",
    "ipv6.hopopts.nxt",
    "ipv6.routing.nxt",
    "ipv6.fraghdr.nxt",
    "ipv6.dstopts.nxt",
    "ah.next_header",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
];

/// Per-packet differences that are understood: (file, frame, field) -> why.
const KNOWN_DIFFERENCES: &[(&str, u64, &str, &str)] = &[
    (
        "pcapplusplus__ipv4-options.pcap",
        6,
        "dst",
        "strict source route option: tshark's ip.dst is the route's final hop (0.0.0.0), \
         we report the header's destination (the current hop) as flow logs do",
    ),
    ("pcapplusplus__ipv4-options.pcap", 7, "dst", "loose source route option: as frame 6"),
];

struct Row<'a> {
    cols: &'a [String],
}

impl Row<'_> {
    fn all(&self, field: &str) -> Vec<&str> {
        let i = FIELDS.iter().position(|f| *f == field).expect("field listed");
        match self.cols.get(i) {
            Some(s) if !s.is_empty() => s.split('|').collect(),
            _ => Vec::new(),
        }
    }
    fn first(&self, field: &str) -> Option<&str> {
        self.all(field).first().copied()
    }
    fn nth_num<T: std::str::FromStr>(&self, field: &str, n: usize) -> Option<T> {
        self.all(field).get(n).and_then(|s| s.parse().ok())
    }
    fn num<T: std::str::FromStr>(&self, field: &str) -> Option<T> {
        self.nth_num(field, 0)
    }
}

#[derive(Debug)]
struct Expected {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<u8>,
    ip_len: Option<u32>,
}

/// tshark's view of the outermost IP layer, from frame.protocols.
fn expected(row: &Row) -> Option<Expected> {
    let protos = row.first("frame.protocols").unwrap_or("");
    let toks: Vec<&str> = protos.split(':').collect();
    let at = toks.iter().position(|t| *t == "ip" || *t == "ipv6")?;
    if toks[at] == "ip" {
        return Some(Expected {
            src: row.first("ip.src").and_then(|s| s.parse().ok()),
            dst: row.first("ip.dst").and_then(|s| s.parse().ok()),
            proto: row.num("ip.proto"),
            ip_len: row.num("ip.len"),
        });
    }
    // IPv6: the protocol is the next header of the last extension header of
    // the outermost chain (per-type occurrence k of the outer chain is the
    // k-th value of that type's nxt field, as the outer layer comes first).
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut last: Option<(&str, usize)> = None;
    for t in &toks[at + 1..] {
        let field = match *t {
            "ipv6.hopopts" => "ipv6.hopopts.nxt",
            "ipv6.routing" => "ipv6.routing.nxt",
            "ipv6.fraghdr" => "ipv6.fraghdr.nxt",
            "ipv6.dstopts" => "ipv6.dstopts.nxt",
            "ah" => "ah.next_header",
            _ => break,
        };
        let c = counts.entry(field).or_insert(0);
        last = Some((field, *c));
        *c += 1;
    }
    let proto = match last {
        Some((field, k)) => row.nth_num(field, k),
        None => row.num("ipv6.nxt"),
    };
    let plen: Option<u32> = row.num("ipv6.plen");
    let ip_len = match (plen, row.num::<u32>("ipv6.opt.jumbo")) {
        (Some(0), Some(j)) => Some(40 + j),
        (p, _) => p.map(|p| p + 40),
    };
    Some(Expected {
        src: row.first("ipv6.src").and_then(|s| s.parse().ok()),
        dst: row.first("ipv6.dst").and_then(|s| s.parse().ok()),
        proto,
        ip_len,
    })
}

/// "1418145369.924505488" -> ns since the epoch.
fn epoch_ns(s: &str) -> Option<i64> {
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let neg = sec.starts_with('-');
    let sec: i64 = sec.parse().ok()?;
    let mut f = frac.to_string();
    f.truncate(9);
    while f.len() < 9 {
        f.push('0');
    }
    let frac: i64 = f.parse().ok()?;
    let base = sec.checked_mul(1_000_000_000)?;
    if neg {
        base.checked_sub(frac)
    } else {
        base.checked_add(frac)
    }
}

#[derive(Default)]
struct Tally {
    files: usize,
    packets: u64,
    ip_packets: u64,
    port_checks: u64,
    icmp_checks: u64,
    ts_checks: u64,
    known: u64,
    mismatches: Vec<String>,
}

fn compare_file(path: &Path, tally: &Mutex<Tally>) {
    let file = name(path);
    // tshark also lists pcapng custom blocks as frames, without an encapsulation.
    let enc = FIELDS.iter().position(|f| *f == "frame.encap_type").unwrap_or(0);
    let rows: Vec<Vec<String>> = tshark_fields(path, FIELDS)
        .into_iter()
        .filter(|r| r.get(enc).is_some_and(|e| !e.is_empty()))
        .collect();
    let mut mism = Vec::new();
    let (mut ip_packets, mut port_checks, mut icmp_checks, mut known) = (0u64, 0u64, 0u64, 0u64);
    let mut ts_checks = 0u64;
    let mut saturated_ts = 0u64;
    let mut reader = match CaptureReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            tally.lock().unwrap().mismatches.push(format!("{file}: open failed: {e}"));
            return;
        }
    };
    let mut n = 0usize;
    while let Some(pkt) = reader.next_packet() {
        let pkt = match pkt {
            Ok(p) => p,
            Err(e) => {
                mism.push(format!("{file}: read error: {e}"));
                break;
            }
        };
        let frame = pkt.number;
        let Some(cols) = rows.get(n) else {
            n += 1;
            continue;
        };
        n += 1;
        let row = Row { cols };
        let mut diff = |field: &str, ours: String, theirs: String| {
            if let Some(k) = KNOWN_DIFFERENCES.iter().find(|k| k.0 == file && k.1 == frame && k.2 == field) {
                let _ = k.3;
                known += 1;
            } else {
                mism.push(format!("{file} frame {frame}: {field}: ours {ours}, tshark {theirs}"));
            }
        };
        if pkt.timestamp_known {
            ts_checks += 1;
            let text = row.first("frame.time_epoch");
            let theirs = text.and_then(epoch_ns);
            let saturated = pkt.timestamp_ns == i64::MAX || pkt.timestamp_ns == i64::MIN;
            if theirs.is_none() && text.is_some() && saturated {
                // Known difference: beyond i64 nanoseconds (after 2262; the
                // pcapng example's second interface is in year 586524): tshark
                // prints it, we saturate and warn (Warning::TimestampOverflow).
                saturated_ts += 1;
            } else if theirs != Some(pkt.timestamp_ns) {
                diff("timestamp", pkt.timestamp_ns.to_string(), format!("{theirs:?}"));
            }
        }
        let ours = decode(pkt.link_type, pkt.data, DecodeOptions::default());
        let exp = expected(&row);
        let (m, e) = match (ours, exp) {
            (Err(_), None) => continue,
            (Ok(m), Some(e)) => (m, e),
            (Ok(m), None) => {
                diff("ip", format!("{} -> {}", m.src, m.dst), "no IP layer".into());
                continue;
            }
            (Err(why), Some(e)) => {
                diff("ip", format!("not IP: {why}"), format!("{e:?}"));
                continue;
            }
        };
        ip_packets += 1;
        if Some(m.src) != e.src {
            diff("src", m.src.to_string(), format!("{:?}", e.src));
        }
        if Some(m.dst) != e.dst {
            diff("dst", m.dst.to_string(), format!("{:?}", e.dst));
        }
        if Some(m.protocol) != e.proto {
            diff("protocol", m.protocol.to_string(), format!("{:?}", e.proto));
        }
        if Some(m.ip_total_len) != e.ip_len {
            diff("ip_len", m.ip_total_len.to_string(), format!("{:?}", e.ip_len));
        }
        let carries_l4 = !m.fragment.is_fragment || m.fragment.first;
        let (pf_s, pf_d) = match m.protocol {
            6 => ("tcp.srcport", "tcp.dstport"),
            17 => ("udp.srcport", "udp.dstport"),
            _ => ("", ""),
        };
        if !pf_s.is_empty() {
            port_checks += 1;
            let theirs = (row.num::<u16>(pf_s), row.num::<u16>(pf_d));
            let ours_p = if carries_l4 {
                (Some(m.src_port), Some(m.dst_port))
            } else {
                (None, None)
            };
            if ours_p != theirs {
                diff("ports", format!("{ours_p:?}"), format!("{theirs:?}"));
            }
        }
        let icmp_f = match m.protocol {
            1 => Some(("icmp.type", "icmp.code")),
            58 => Some(("icmpv6.type", "icmpv6.code")),
            _ => None,
        };
        if let (Some((ft, fc)), true) = (icmp_f, carries_l4) {
            icmp_checks += 1;
            let theirs = (row.num::<u8>(ft), row.num::<u8>(fc));
            let ours_i = (m.icmp.map(|i| i.icmp_type), m.icmp.map(|i| i.code));
            if ours_i != theirs {
                diff("icmp", format!("{ours_i:?}"), format!("{theirs:?}"));
            }
        }
    }
    if n != rows.len() {
        mism.push(format!("{file}: packet count: ours {n}, tshark {}", rows.len()));
    }
    for w in reader.warnings().iter().filter(|w| w.is_fatal()) {
        mism.push(format!("{file}: reader stopped: {w}"));
    }
    let mut t = tally.lock().unwrap();
    t.files += 1;
    t.packets += n as u64;
    t.ip_packets += ip_packets;
    t.port_checks += port_checks;
    t.icmp_checks += icmp_checks;
    t.ts_checks += ts_checks;
    t.known += known + saturated_ts;
    t.mismatches.extend(mism);
}

#[test]
fn corpus_agrees_with_tshark() {
    require_tshark();
    let mut files: Vec<PathBuf> = capture_files("pcap");
    files.extend(capture_files("pcap-bulk"));
    // Largest first, so the two workers finish together.
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)));
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = files.get(i) else { break };
                compare_file(p, &tally);
            });
        }
    });
    let t = tally.into_inner().unwrap();
    println!(
        "tshark comparison: {} files, {} packets, {} IP packets compared (addresses, protocol, ip.len), \
         {} port checks, {} ICMP checks, {} timestamps (ns), {} known differences, {} mismatches",
        t.files,
        t.packets,
        t.ip_packets,
        t.port_checks,
        t.icmp_checks,
        t.ts_checks,
        t.known,
        t.mismatches.len()
    );
    assert_eq!(t.files, files.len());
    assert!(
        t.mismatches.is_empty(),
        "{} mismatches with tshark:\n{}",
        t.mismatches.len(),
        t.mismatches.join("\n")
    );
}
