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
