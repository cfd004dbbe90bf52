//! `PacketStream::start_tracking`: the decoding thread tracks flows itself
//! until the caller calls `track`, then hands the flows and the records so
//! far over, each given its user value by `track`'s `init` in place of the
//! placeholder it was tracked with. Whenever the
//! hand-over happens (at once, or after the whole capture was tracked
//! early), the records are those of `PacketStream::start`: same records,
//! same order, same user values. Over every capture of the corpus, with
//! timeouts short enough that flows end while the decoding thread tracks;
//! also when a later input fails, at input boundaries, past the bound on
//! records held for the hand-over, and when the stream is dropped unused.

mod common;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netwatch::watcher::replay::{CaptureInput, CaptureStats, PacketStream, ReplayOptions};
use netwatch_capture::file::{CaptureReader, PcapWriter};
use netwatch_flowlogs::{FlowRecord, FlowRecordKind, FlowTableConfig, FlowTuple};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus");

/// Short timeouts: flows end (idle, closed, active) in the middle of the
/// corpus captures, so the early phase hands over End records too.
fn options() -> ReplayOptions {
    let s = 1_000_000_000;
    ReplayOptions {
        decap: false,
        table: FlowTableConfig {
            tcp_idle_ns: 2 * s,
            udp_idle_ns: s,
            icmp_idle_ns: s,
            other_idle_ns: s,
            tcp_closed_linger_ns: s / 2,
            active_timeout_ns: Some(5 * s),
            report_interval_ns: Some(3 * s),
            ..FlowTableConfig::default()
        },
    }
}

/// The user value of a flow: a function of its tuple, so that a flow given
/// the wrong tuple's value (or none) shows.
fn user(t: &FlowTuple) -> (FlowTuple, u64) {
    let ports = (u64::from(t.src_port) << 16) | u64::from(t.dst_port);
    (*t, ports ^ u64::from(t.protocol) << 40)
}

type User = (FlowTuple, u64);
type Records = Vec<FlowRecord<User>>;

/// The user value of flows tracked before the hand-over: no flow's own.
fn placeholder() -> User {
    let none = std::net::IpAddr::from([0u8; 4]);
    let t = FlowTuple {
        protocol: 0,
        src: none,
        src_port: 0,
        dst: none,
        dst_port: 0,
    };
    (t, u64::MAX)
}

fn run(stream: PacketStream<User>, opts: &ReplayOptions) -> (Records, CaptureStats) {
    let mut records = Vec::new();
    let stats = stream.track(opts, user, |r| records.push(r), |_| {}).expect("replay");
    (records, stats)
}

/// Records through `start`, through `start_tracking` handed over at once,
/// and through `start_tracking` handed over after the decoding thread had
/// time to track everything; all three must agree.
fn check(name: &str, inputs: &[CaptureInput]) -> u64 {
    let opts = options();
    let (plain, plain_stats) = run(PacketStream::start(inputs, &opts), &opts);
    let (soon, soon_stats) = run(PacketStream::start_tracking(inputs, &opts, placeholder()), &opts);
    // Slow preparations: the decoding thread tracks the whole capture
    // (waiting longer if a busy machine kept it from finishing).
    let (mut late, mut late_stats) = (Vec::new(), CaptureStats::default());
    for wait in [20, 100, 1000] {
        let stream = PacketStream::start_tracking(inputs, &opts, placeholder());
        std::thread::sleep(Duration::from_millis(wait));
        (late, late_stats) = run(stream, &opts);
        if late_stats.tracked_early == plain_stats.ip_packets {
            break;
        }
    }
    assert!(!plain.is_empty() || plain_stats.ip_packets == 0, "{name}: no records");
    assert_eq!(plain_stats.tracked_early, 0, "{name}");
    assert_eq!(soon, plain, "{name}: records handed over at once differ");
    assert_eq!(late, plain, "{name}: records handed over at the end differ");
    assert_eq!(
        late_stats.tracked_early, plain_stats.ip_packets,
        "{name}: the whole capture was tracked early"
    );
    for s in [&soon_stats, &late_stats] {
        let mut s = s.clone();
        s.tracked_early = 0;
        assert_eq!(s, plain_stats, "{name}: counts differ");
    }
    plain.iter().filter(|r| matches!(r.kind, FlowRecordKind::End(_))).count() as u64
}

fn captures(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(CORPUS).join(dir))
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_corpus_capture_hands_over_the_same_records() {
    let mut files = captures("pcap");
    files.push(Path::new(CORPUS).join("pcap-bulk/pcapplusplus__tls2.pcap"));
    assert!(files.len() > 40, "{} captures", files.len());
    let mut ends = 0;
    for f in &files {
        // A capture that does not open is the reader's business (tested
        // elsewhere); both paths give the same error then.
        if CaptureReader::open(f).is_err() {
            continue;
        }
        ends += check(&f.display().to_string(), &[CaptureInput::File(f.clone())]);
    }
    assert!(ends > 1000, "{ends} flows ended");
}

#[test]
fn several_inputs_hand_over_the_same_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(CORPUS).join("pcap-bulk/pcapplusplus__tls2.pcap");
    let (a, b, _) = common::split_capture(&src, 3000, dir.path());
    let (a, b) = (CaptureInput::File(a), CaptureInput::File(b));
    // Rotated files (one capture), and the same files in the wrong order
    // (the second starts before the first ended: a new flow table, made by
    // whichever thread tracks at that point).
    check("a, b", &[a.clone(), b.clone()]);
    check("b, a", &[b, a]);
}

/// A user value that counts its clones, slowly: the decoding thread
/// clones the placeholder for each flow it creates while it tracks early
/// (and for its Begin record).
#[derive(Debug)]
struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Clone for Counting {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(50));
        Counting(self.0.clone())
    }
}

#[test]
fn a_dropped_stream_stops_tracking() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // One capture of 20,000 one-datagram UDP flows: tracking it all takes
    // the decoding thread a second at 50 us a flow.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("many.pcap");
    common::udp_flows_capture(&path, 20_000, 1_000);
    let clones = Arc::new(AtomicUsize::new(0));
    let stream = PacketStream::start_tracking(&[CaptureInput::File(path)], &ReplayOptions::default(), Counting(clones.clone()));
    // Let it start, then drop it, as a caller whose preparations failed.
    while clones.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(stream);
    // It stops at its next batch (1,024 packets): wait until the count
    // holds still (at 50 us or more a flow, a batch takes 50-200 ms).
    let mut stopped = clones.load(Ordering::Relaxed);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(250));
        let now = clones.load(Ordering::Relaxed);
        if now == stopped {
            break;
        }
        stopped = now;
    }
    // Two clones a flow (its slot and its Begin record); a batch or two.
    assert!(
        stopped <= 2 * 3 * 1024,
        "{stopped} placeholder clones: the thread went on after the drop"
    );
}

/// The records and the outcome (an error as text) of a replay.
fn run_result(stream: PacketStream<User>, opts: &ReplayOptions) -> (Records, Result<CaptureStats, String>) {
    let mut records = Vec::new();
    let res = stream.track(opts, user, |r| records.push(r), |_| {}).map_err(|e| e.to_string());
    (records, res)
}

/// An input that fails after a good one: the good one's records reach the
/// sink before the error (`evaluate` prints them and says how many), also
/// when the decoding thread tracked them and the error came before the
/// hand-over.
#[test]
fn an_error_after_early_tracking_keeps_the_records_before_it() {
    let opts = options();
    let tls2 = Path::new(CORPUS).join("pcap-bulk/pcapplusplus__tls2.pcap");
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.pcap");
    std::fs::write(&bad, b"not a capture at all").expect("write");
    for second in [dir.path().join("missing.pcap"), bad] {
        let inputs = [CaptureInput::File(tls2.clone()), CaptureInput::File(second)];
        let (plain, plain_res) = run_result(PacketStream::start(&inputs, &opts), &opts);
        let stream = PacketStream::start_tracking(&inputs, &opts, placeholder());
        std::thread::sleep(Duration::from_millis(300));
        let (early, early_res) = run_result(stream, &opts);
        assert!(!plain.is_empty());
        assert_eq!(early, plain, "records before the error");
        assert_eq!(early_res.map(|_| ()), plain_res.map(|_| ()));
    }
}

/// Records held for the hand-over are bounded: past the bound the decoding
/// thread waits for the caller (the rest then comes as batches), with the
/// same records in the end.
#[test]
fn early_records_are_bounded() {
    // 70,000 one-datagram UDP flows 1 ms apart: with a 1 s idle timeout
    // each ends (Begin and End records) while the capture goes on.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("many.pcap");
    common::udp_flows_capture(&path, 70_000, 1_000_000);
    let opts = options();
    let inputs = [CaptureInput::File(path)];
    let (plain, plain_stats) = run(PacketStream::start(&inputs, &opts), &opts);
    let stream = PacketStream::start_tracking(&inputs, &opts, placeholder());
    std::thread::sleep(Duration::from_millis(1000));
    let (early, stats) = run(stream, &opts);
    assert_eq!(early, plain);
    assert_eq!(stats.ip_packets, 70_000);
    assert!(
        stats.tracked_early >= 30_000 && stats.tracked_early < plain_stats.ip_packets,
        "{} packets tracked early: the thread should have waited at the bound",
        stats.tracked_early
    );
}

/// Many small inputs (each under a batch, so every flush is an input
/// boundary), some going back in time, with and without eviction: the
/// hand-over at many different moments gives the records of `start`.
#[test]
fn handover_at_input_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut r = CaptureReader::open(Path::new(CORPUS).join("pcap-bulk/pcapplusplus__tls2.pcap")).expect("corpus capture opens");
    let link = r.interfaces()[0].link_type;
    let mut files = Vec::new();
    let mut w: Option<PcapWriter<BufWriter<File>>> = None;
    let mut n = 0u64;
    while let Some(p) = r.next_packet() {
        let p = p.expect("packet");
        if n % 700 == 0 {
            if let Some(mut w) = w.take() {
                w.flush().expect("flush");
            }
            let path = dir.path().join(format!("{n}.pcap"));
            files.push(path.clone());
            w = Some(PcapWriter::new(BufWriter::new(File::create(&path).expect("create")), link, 262_144, true).expect("header"));
        }
        if let Some(w) = w.as_mut() {
            w.write_packet(p.timestamp_ns, p.orig_len, p.data).expect("write");
        }
        n += 1;
    }
    if let Some(mut w) = w {
        w.flush().expect("flush");
    }
    // Out of order: every third file swapped with its predecessor.
    for i in (2..files.len()).step_by(3) {
        files.swap(i - 1, i);
    }
    let inputs: Vec<CaptureInput> = files.into_iter().map(CaptureInput::File).collect();
    for max_flows in [None, Some(64)] {
        let mut opts = options();
        opts.table.max_flows = max_flows;
        let (plain, _) = run(PacketStream::start(&inputs, &opts), &opts);
        for wait_us in [0u64, 50, 200, 500, 1000, 2000, 4000, 8000, 30000] {
            let stream = PacketStream::start_tracking(&inputs, &opts, placeholder());
            std::thread::sleep(Duration::from_micros(wait_us));
            let (early, _) = run(stream, &opts);
            assert_eq!(early, plain, "max_flows {max_flows:?}, wait {wait_us} us");
            assert!(early.iter().all(|r| r.user.1 != u64::MAX), "a placeholder was left");
        }
    }
}
