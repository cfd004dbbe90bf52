//! Memory-mapped reading (`CaptureReader::open`) and streamed reading
//! (`CaptureReader::with_options` over a `File`) see exactly the same
//! packets, warnings and errors: on every corpus capture, every malformed
//! one, and on files larger than the 8 MiB map window with records that
//! straddle windows (including one record larger than a window).

mod common;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{capture_files, name};
use netwatch_capture::file::{CaptureReader, LinkType, PcapWriter, ReaderOptions};

/// A packet as read: number, byte offset, time, caplen, orig_len, link
/// type, interface and a hash of the data.
type Seen = (u64, u64, i64, u32, u32, u16, u32, u64);

/// Everything a reader yields, packet by packet, then how it ended.
#[derive(Debug, PartialEq)]
struct Transcript {
    packets: Vec<Seen>,
    end: String,
    warnings: Vec<String>,
    byte_offset: u64,
}

fn fnv(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn transcript<R: Read>(opened: Result<CaptureReader<R>, netwatch_capture::ReadError>) -> Transcript {
    let mut r = match opened {
        Ok(r) => r,
        Err(e) => {
            return Transcript {
                packets: Vec::new(),
                end: format!("header error: {e}"),
                warnings: Vec::new(),
                byte_offset: 0,
            }
        }
    };
    let mut packets = Vec::new();
    let mut end = "end".to_string();
    while let Some(p) = r.next_packet() {
        match p {
            Ok(p) => packets.push((
                p.number,
                p.offset,
                p.timestamp_ns,
                p.caplen,
                p.orig_len,
                p.link_type.0,
                p.interface_id,
                fnv(p.data),
            )),
            Err(e) => {
                end = format!("error: {e}");
                break;
            }
        }
    }
    Transcript {
        packets,
        end,
        warnings: r.warnings().iter().map(|w| w.to_string()).collect(),
        byte_offset: r.byte_offset(),
    }
}

fn both(path: &Path, opts: ReaderOptions) -> (Transcript, Transcript) {
    let mapped = transcript(CaptureReader::open_with_options(path, opts.clone()));
    let file = File::open(path).unwrap();
    let streamed = transcript(CaptureReader::with_options(file, ReaderOptions { memory_map: false, ..opts }));
    (mapped, streamed)
}

#[test]
fn mapped_and_streamed_reading_agree_on_the_corpus() {
    let mut files = 0;
    for dir in ["pcap", "pcap-bulk", "pcap-malformed"] {
        for path in capture_files(dir) {
            let (mapped, streamed) = both(&path, ReaderOptions::default());
            assert_eq!(mapped, streamed, "{dir}/{}", name(&path));
            files += 1;
        }
    }
    assert!(files > 100, "only {files} corpus files");
}

/// A capture of `sizes` packets (bytes of each), written to a temp file.
fn synthetic(tag: &str, sizes: &[usize]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("netwatch-mapped-{tag}-{}.pcap", std::process::id()));
    let out = std::io::BufWriter::new(File::create(&path).unwrap());
    let mut w = PcapWriter::new(out, LinkType(1), 16 << 20, true).unwrap();
    for (i, &n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..n).map(|k| (k as u64 * 31 + i as u64 * 7) as u8).collect();
        w.write_packet(1_700_000_000_000_000_000 + i as i64 * 1000, n as u32, &data)
            .unwrap();
    }
    w.flush().unwrap();
    path
}

#[test]
fn records_straddling_map_windows_are_read_whole() {
    // ~20 MiB of odd-sized records: several cross the 8 MiB window ends.
    let sizes: Vec<usize> = (0..14_000).map(|i| 600 + (i * 7919) % 1400).collect();
    let path = synthetic("straddle", &sizes);
    let (mapped, streamed) = both(&path, ReaderOptions::default());
    let _ = std::fs::remove_file(&path);
    assert_eq!(mapped.packets.len(), sizes.len());
    assert_eq!(mapped.end, "end");
    assert_eq!(mapped, streamed);
}

#[test]
fn a_record_larger_than_a_map_window_is_read_whole() {
    let sizes = [100, 9 << 20, 200, 300];
    let path = synthetic("huge", &sizes);
    let opts = ReaderOptions {
        max_caplen: 16 << 20,
        ..ReaderOptions::default()
    };
    let (mapped, streamed) = both(&path, opts);
    let _ = std::fs::remove_file(&path);
    let caplens: Vec<u32> = mapped.packets.iter().map(|p| p.3).collect();
    assert_eq!(caplens, [100, 9 << 20, 200, 300]);
    assert_eq!(mapped, streamed);
}

#[test]
fn a_file_cut_inside_a_record_warns_the_same_way() {
    let sizes: Vec<usize> = (0..15_000).map(|i| 700 + i % 900).collect();
    let path = synthetic("cut", &sizes);
    let len = std::fs::metadata(&path).unwrap().len();
    // Cut 9 MiB + a bit in: inside a record, past the first window.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len.min((9 << 20) + 333)).unwrap();
    drop(f);
    let (mapped, streamed) = both(&path, ReaderOptions::default());
    let _ = std::fs::remove_file(&path);
    assert!(!mapped.warnings.is_empty(), "no warning for the cut record");
    assert_eq!(mapped, streamed);
}
