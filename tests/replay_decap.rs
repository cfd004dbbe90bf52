//! `netwatch flows --decap` on tunnels whose outer datagram is fragmented,
//! checked against tshark (4.0), which reassembles the outer datagram and
//! shows one inner packet of the inner `ip.len`: the inner flow counts that
//! packet once with its inner IP length, whichever fragment comes first;
//! every frame still counts as an IP packet in the summary; without
//! `--decap` the outer flow counts every fragment with its own IP length.

mod common;

use std::fs::File;
use std::io::BufWriter;
use std::net::IpAddr;
use std::path::Path;

use common::ipv4;
use netwatch::watcher::replay::{replay, CaptureInput, CaptureStats, ReplayOptions};
use netwatch_capture::file::{LinkType, PcapWriter};
use netwatch_flowlogs::{FlowRecordKind, FlowTuple};

fn ethernet(ip: &[u8]) -> Vec<u8> {
    [
        vec![0, 0x11, 0x22, 0x33, 0x44, 0x55, 0, 0x66, 0x77, 0x88, 0x99, 0xAA, 0x08, 0x00],
        ip.to_vec(),
    ]
    .concat()
}

/// A 1028-byte IPv4/UDP packet (192.168.1.1:3333 -> 192.168.1.2:53) in
/// GRE over IPv4 (1.1.1.1 -> 2.2.2.2), the outer datagram in two fragments
/// of 820 and 252 bytes: (first, later), as Ethernet frames.
fn gre_fragments() -> (Vec<u8>, Vec<u8>) {
    let mut udp = vec![0x0D, 0x05, 0, 53, 0x03, 0xF0, 0, 0];
    udp.extend([b'i'; 1000]);
    let inner = ipv4([192, 168, 1, 1], [192, 168, 1, 2], 17, 0, 0, &udp);
    let gre = [vec![0, 0, 0x08, 0x00], inner].concat();
    let (p1, p2) = gre.split_at(800);
    (
        ethernet(&ipv4([1, 1, 1, 1], [2, 2, 2, 2], 47, 42, 0x2000, p1)),
        ethernet(&ipv4([1, 1, 1, 1], [2, 2, 2, 2], 47, 42, 800 / 8, p2)),
    )
}

/// (tuple, packets, bytes) of each flow's end, and the capture's counts.
fn flows(dir: &Path, name: &str, frames: &[&[u8]], decap: bool) -> (Vec<(FlowTuple, u64, u64)>, CaptureStats) {
    let path = dir.join(name);
    let mut w = PcapWriter::new(
        BufWriter::new(File::create(&path).expect("create")),
        LinkType::ETHERNET,
        65535,
        false,
    )
    .expect("header");
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(1_700_000_000_000_000_000 + i as i64 * 1_000_000_000, f.len() as u32, f)
            .expect("write");
    }
    w.flush().expect("flush");
    drop(w);
    let mut ends = Vec::new();
    let opts = ReplayOptions {
        decap,
        ..ReplayOptions::default()
    };
    let stats = replay(
        &[CaptureInput::File(path)],
        &opts,
        |_| (),
        |r| {
            if matches!(r.kind, FlowRecordKind::End(_)) {
                ends.push((r.tuple, r.forward.packets + r.reverse.packets, r.forward.bytes + r.reverse.bytes));
            }
        },
    )
    .expect("replay");
    (ends, stats)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn a_fragmented_tunnel_datagram_counts_once_in_the_inner_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, later) = gre_fragments();
    let inner = FlowTuple {
        protocol: 17,
        src: ip("192.168.1.1"),
        src_port: 3333,
        dst: ip("192.168.1.2"),
        dst_port: 53,
    };
    let outer = FlowTuple {
        protocol: 47,
        src: ip("1.1.1.1"),
        src_port: 0,
        dst: ip("2.2.2.2"),
        dst_port: 0,
    };
    for (name, frames) in [
        ("in-order.pcap", [&first[..], &later[..]]),
        ("later-first.pcap", [&later[..], &first[..]]),
    ] {
        let (ends, stats) = flows(dir.path(), name, &frames, true);
        assert_eq!(ends, [(inner, 1, 1028)], "{name}");
        // Both frames are IP, neither is cut short.
        assert_eq!(
            (stats.packets, stats.ip_packets, stats.non_ip_frames, stats.truncated_packets),
            (2, 2, 0, 0),
            "{name}"
        );
        // Without decap: the outer flow, every fragment with its own length.
        let (ends, stats) = flows(dir.path(), name, &frames, false);
        assert_eq!(ends, [(outer, 2, 820 + 252)], "{name}");
        assert_eq!((stats.ip_packets, stats.truncated_packets), (2, 0), "{name}");
    }
    // The first fragment never comes: the later one cannot be attributed
    // to the inner flow and stays the outer packet it alone is.
    let (ends, stats) = flows(dir.path(), "later-alone.pcap", &[&later], true);
    assert_eq!(ends, [(outer, 1, 252)]);
    assert_eq!((stats.packets, stats.ip_packets), (1, 1));
}

/// The same through the command line: its summary line counts both frames
/// as IP packets, the inner datagram's bytes once.
#[test]
fn flows_decap_summary_counts_every_frame_and_the_inner_bytes_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, later) = gre_fragments();
    // Writes d.pcap (and checks nothing yet).
    let _ = flows(dir.path(), "d.pcap", &[&first, &later], true);
    let path = dir.path().join("d.pcap");
    let out = common::netwatch(&["flows", "--decap", path.to_str().expect("utf-8 path"), "-o", "jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""packetsSent":1,"bytesSent":1028,"#), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 flows, 2 packets (2 IP, 0 non-IP, 0 truncated), 1028 IP bytes"),
        "{stderr}"
    );
}
