//! Several inputs in one replay (reading runs on its own thread, in
//! batches): rotated files of one capture track as the whole capture; an
//! input that starts before the previous ones ended is another capture,
//! whose flows never merge with theirs; a capture on stdin (`-`) gives the
//! same flows as the file.

mod common;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use netwatch::watcher::replay::{replay, CaptureInput, ReplayOptions};
use netwatch_capture::file::{CaptureReader, PcapWriter};
use netwatch_flowlogs::{FlowRecordKind, FlowTuple};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/pcap-bulk/pcapplusplus__tls2.pcap");

/// A flow's end as compared here: tuple, packets and bytes each way, first
/// and last time.
type End = (FlowTuple, u64, u64, u64, u64, i64, i64);

fn ends(inputs: &[CaptureInput]) -> Vec<End> {
    let mut v = Vec::new();
    let stats = replay(
        inputs,
        &ReplayOptions::default(),
        |_| (),
        |r| {
            if matches!(r.kind, FlowRecordKind::End(_)) {
                v.push((
                    r.tuple,
                    r.forward.packets,
                    r.forward.bytes,
                    r.reverse.packets,
                    r.reverse.bytes,
                    r.first_ns,
                    r.last_ns,
                ));
            }
        },
    )
    .expect("replay");
    assert_eq!(stats.files, inputs.len());
    v
}

fn sorted(mut v: Vec<End>) -> Vec<End> {
    v.sort();
    v
}

#[test]
fn rotated_files_track_as_one_capture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = PathBuf::from(SRC);
    let (a, b, n) = common::split_capture(&src, 3000, dir.path());
    assert!(n > 6000, "{n} packets");
    let whole = ends(&[CaptureInput::File(src)]);
    let parts = ends(&[CaptureInput::File(a), CaptureInput::File(b)]);
    // Same flows, same counts: flows spanning the cut are not split.
    assert_eq!(sorted(parts), sorted(whole));
}

#[test]
fn an_input_from_earlier_is_another_capture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, _) = common::split_capture(Path::new(SRC), 3000, dir.path());
    // b (later packets) first, then a: a starts before b ended.
    let both = ends(&[CaptureInput::File(b.clone()), CaptureInput::File(a.clone())]);
    let alone_b = ends(&[CaptureInput::File(b)]);
    let alone_a = ends(&[CaptureInput::File(a)]);
    // b's flows end before a's packets are tracked, in b's order; then a's.
    assert_eq!(both.len(), alone_b.len() + alone_a.len());
    assert_eq!(both[..alone_b.len()], alone_b[..]);
    assert_eq!(sorted(both[alone_b.len()..].to_vec()), sorted(alone_a));
}

#[test]
fn stdin_gives_the_same_flows_as_the_file() {
    let bin = env!("CARGO_BIN_EXE_netwatch");
    let from_file = Command::new(bin).args(["flows", SRC]).output().expect("netwatch runs");
    assert!(from_file.status.success(), "{}", String::from_utf8_lossy(&from_file.stderr));
    let from_stdin = Command::new(bin)
        .args(["flows", "-"])
        .stdin(Stdio::from(File::open(SRC).expect("corpus capture")))
        .output()
        .expect("netwatch runs");
    assert!(from_stdin.status.success(), "{}", String::from_utf8_lossy(&from_stdin.stderr));
    assert!(!from_file.stdout.is_empty());
    assert_eq!(from_stdin.stdout, from_file.stdout);
    // Per-flow lines: the summary on stderr counts them.
    let lines = from_file.stdout.iter().filter(|&&c| c == b'\n').count();
    let summary = String::from_utf8_lossy(&from_file.stderr);
    assert!(summary.starts_with(&format!("{lines} flows,")), "{summary}");
}

/// A packet stamped far in the future (damage, a bad rewrite) moves the
/// flow clock past every later packet: the replay says so, naming the first
/// packet that then comes out of time order.
#[test]
fn a_far_future_timestamp_is_reported() {
    let dir = std::env::temp_dir().join(format!("netwatch-future-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("future.pcap");
    let mut r = CaptureReader::open(Path::new(SRC)).expect("corpus capture opens");
    let link = r.interfaces()[0].link_type;
    let mut w = PcapWriter::new(BufWriter::new(File::create(&path).expect("create")), link, 262_144, true).expect("header");
    let (mut n, mut offset_of_11) = (0u64, 0u64);
    let mut written = 0u64;
    while let Some(p) = r.next_packet() {
        let p = p.expect("packet");
        n += 1;
        // Packet 10 a year ahead.
        let ts = if n == 10 {
            p.timestamp_ns + 365 * 86_400 * 1_000_000_000
        } else {
            p.timestamp_ns
        };
        if n == 11 {
            offset_of_11 = 24 + written;
        }
        w.write_packet(ts, p.orig_len, p.data).expect("write");
        written += 16 + p.data.len() as u64;
    }
    w.flush().expect("flush");
    let stats = replay(&[CaptureInput::File(path.clone())], &ReplayOptions::default(), |_| (), |_| {}).expect("replay");
    let want = format!("packet 11 at byte offset {offset_of_11}: time ");
    let w = stats.warnings.iter().find(|w| w.contains(&want));
    let w = w.unwrap_or_else(|| panic!("no warning for packet 11: {:?}", stats.warnings));
    assert!(w.contains(&format!("({} more such packets)", n - 11)), "{w}");
    // The corpus file itself is in order: no such warning.
    let stats = replay(&[CaptureInput::File(PathBuf::from(SRC))], &ReplayOptions::default(), |_| (), |_| {}).expect("replay");
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    let _ = std::fs::remove_dir_all(&dir);
}
