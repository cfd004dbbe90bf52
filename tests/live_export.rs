//! Live flow tracking with IPFIX export, through the library: on a quiet
//! link flows still end by their timeouts (the table's clock follows the
//! wall clock) and their records leave within a tick instead of waiting for
//! a full message or the end of the capture; the NSG rule in the records is
//! spelled as the flow logs spell it (`UserRule_...`).

mod common;

use std::net::UdpSocket;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netwatch::watcher::verdicts::{prepare_nic, track_packets, VerdictRecords};
use netwatch_capture::decode::{decode, DecodeOptions};
use netwatch_capture::file::LinkType;
use netwatch_capture::live::TapPacket;
use netwatch_flowlogs::{ExportOptions, ExportProtocol, FlowExporter};

/// IPv4 TCP SYN 52.178.4.10:40000 -> 10.1.1.4:22 (nic-web1's address).
fn ssh_syn() -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 52, 178, 4, 10, 10, 1, 1, 4];
    p.extend(40000u16.to_be_bytes());
    p.extend(22u16.to_be_bytes());
    p.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_quiet_link_still_exports_ended_flows_within_a_tick() {
    let env = common::rest_env();
    let (_view, evaluator) = prepare_nic(&env, "nic-web1", None).unwrap();
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let target = collector.local_addr().unwrap();
    let exporter = FlowExporter::new(target, ExportProtocol::Ipfix, ExportOptions::default()).unwrap();
    let mut records = VerdictRecords::new(Some(&evaluator), None, Some((exporter, target.to_string())));

    // One SYN ten minutes ago: long past TCP's 4-minute idle timeout.
    let ten_minutes_ago = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64 - 600_000_000_000;
    let meta = decode(LinkType::RAW, &ssh_syn(), DecodeOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    tx.send(TapPacket {
        ts_ns: ten_minutes_ago,
        meta,
    })
    .unwrap();

    std::thread::scope(|s| {
        let (ev, recs) = (&evaluator, &mut records);
        let tracker = s.spawn(move || track_packets(&rx, Some(ev), recs));
        // The capture goes on (tx is open) and no other packet comes.
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        let (n, _) = collector.recv_from(&mut buf).expect("an IPFIX message while the capture runs");
        let waited = start.elapsed();
        let msg = &buf[..n];
        assert_eq!(&msg[..2], &[0, 10], "IPFIX version 10");
        assert!(
            waited < Duration::from_secs(5),
            "the record left {waited:?} after the flow's timeout"
        );
        assert!(
            contains(msg, b"UserRule_Deny-SSH-From-Internet"),
            "rule in the flow-log spelling: {:?}",
            String::from_utf8_lossy(msg)
        );
        assert!(!contains(msg, b"securityRules/"));
        drop(tx);
        let counts = tracker.join().unwrap().unwrap();
        assert_eq!((counts.packets, counts.flows), (1, 1));
    });
}

/// A UDP datagram 10.0.0.1:7000 -> 10.0.0.2:8000 in two IPv4 fragments:
/// (first, with the ports; later, without).
fn udp_fragments() -> (Vec<u8>, Vec<u8>) {
    let ipv4 = |flags_frag: u16, payload: &[u8]| {
        let mut h = vec![0x45, 0];
        h.extend((20 + payload.len() as u16).to_be_bytes());
        h.extend(0x4242u16.to_be_bytes());
        h.extend(flags_frag.to_be_bytes());
        h.extend([64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        h.extend(payload);
        h
    };
    let mut udp = Vec::new();
    udp.extend(7000u16.to_be_bytes());
    udp.extend(8000u16.to_be_bytes());
    udp.extend(32u16.to_be_bytes());
    udp.extend([0, 0]);
    udp.extend([0x55; 8]);
    // More fragments (0x2000), offset 0; then offset 2 (16 bytes), the last.
    (ipv4(0x2000, &udp), ipv4(2, &[0x66; 16]))
}

/// Live tracking, as a replay, holds a later fragment that comes before its
/// first until the first comes: one flow, with its ports, not a portless
/// stray beside it.
#[test]
fn live_tracking_holds_fragments_that_come_before_their_first() {
    let (first, later) = udp_fragments();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    let (tx, rx) = mpsc::channel();
    for (i, p) in [later, first].iter().enumerate() {
        let meta = decode(LinkType::RAW, p, DecodeOptions::default()).unwrap();
        tx.send(TapPacket {
            ts_ns: now + i as i64 * 1_000_000,
            meta,
        })
        .unwrap();
    }
    drop(tx);
    let mut records = VerdictRecords::new(None, None, None);
    let counts = track_packets(&rx, None, &mut records).unwrap();
    assert_eq!((counts.packets, counts.flows), (2, 1));
    let totals = records.totals();
    assert_eq!(totals.len(), 1, "{totals:?}");
    assert_eq!((totals[0].flows, totals[0].packets, totals[0].bytes), (1, 2, 36 + 36));
}
