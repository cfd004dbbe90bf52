//! The reader's classic-pcap fast path (a record whole in the input buffer
//! is lent in place) against its general path: every file of the corpus
//! (pcap, pcap-bulk, pcap-malformed), and mutated corpus files, read once
//! from a slice (records whole in the buffer: mostly the fast path) and
//! once through inputs that hand out a few bytes per `read` call (records
//! split across reads: mostly the general path), under several reader
//! options, give the same packets (every `PacketRef` field), warnings,
//! errors and byte offsets.

mod common;

use std::io::{self, Read};

use common::{capture_files, corpus, name};
use netwatch_capture::file::{CaptureReader, ReaderOptions};
use proptest::prelude::*;

/// An input that returns at most `sizes[i % len]` bytes on its i-th read.
struct Trickle<'a> {
    data: &'a [u8],
    sizes: &'a [usize],
    reads: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.sizes[self.reads % self.sizes.len()].max(1);
        self.reads += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Everything observable of one reading, as text and bytes.
#[derive(Debug, PartialEq, Eq)]
struct Reading {
    header: String,
    packets: Vec<(String, Vec<u8>)>,
    end: String,
}

fn read_all<R: Read>(src: R, opts: &ReaderOptions) -> Reading {
    let mut r = match CaptureReader::with_options(src, opts.clone()) {
        Ok(r) => r,
        Err(e) => {
            return Reading {
                header: format!("{e:?}"),
                packets: vec![],
                end: String::new(),
            }
        }
    };
    let header = format!("{:?} {:?}", r.format(), r.interfaces());
    let mut packets = Vec::new();
    let mut error = None;
    while let Some(p) = r.next_packet() {
        match p {
            Ok(p) => {
                let meta = format!(
                    "#{} @{} ts {} {} caplen {} orig {} {:?} if {} len {}",
                    p.number,
                    p.offset,
                    p.timestamp_ns,
                    p.timestamp_known,
                    p.caplen,
                    p.orig_len,
                    p.link_type,
                    p.interface_id,
                    p.data.len(),
                );
                packets.push((meta, p.data.to_vec()));
            }
            Err(e) => error = Some(format!("{e:?}")),
        }
        // The byte offset and counts between packets, too.
        if let Some((m, _)) = packets.last_mut() {
            m.push_str(&format!(" offset {} read {}", r.byte_offset(), r.packets_read()));
        }
    }
    let end = format!(
        "error {error:?} warnings {:?} dropped {} offset {} packets {} interfaces {:?} buffer<= {}",
        r.warnings(),
        r.warnings_dropped(),
        r.byte_offset(),
        r.packets_read(),
        r.interfaces(),
        r.buffer_capacity() <= 2 * (opts.max_caplen as usize + 64 * 1024) + 64
    );
    Reading { header, packets, end }
}

fn options() -> Vec<ReaderOptions> {
    vec![
        ReaderOptions::default(),
        ReaderOptions {
            strict: true,
            ..ReaderOptions::default()
        },
        ReaderOptions {
            max_caplen: 96,
            max_warnings: 2,
            ..ReaderOptions::default()
        },
    ]
}

fn compare(bytes: &[u8], what: &str, chunkings: &[&[usize]]) -> usize {
    let mut packets = 0;
    for opts in options() {
        let direct = read_all(bytes, &opts);
        packets += direct.packets.len();
        for sizes in chunkings {
            let trickled = read_all(
                Trickle {
                    data: bytes,
                    sizes,
                    reads: 0,
                },
                &opts,
            );
            assert_eq!(direct.header, trickled.header, "{what} {opts:?} reads of {sizes:?}");
            assert_eq!(direct.packets.len(), trickled.packets.len(), "{what} {opts:?} reads of {sizes:?}");
            for (i, (a, b)) in direct.packets.iter().zip(&trickled.packets).enumerate() {
                assert_eq!(a, b, "{what} {opts:?} reads of {sizes:?}: packet {}", i + 1);
            }
            assert_eq!(direct.end, trickled.end, "{what} {opts:?} reads of {sizes:?}");
        }
    }
    packets
}

#[test]
fn fast_and_general_paths_read_the_corpus_alike() {
    let mut files = 0;
    let mut packets = 0;
    for dir in ["pcap", "pcap-malformed", "pcap-bulk"] {
        for path in capture_files(dir) {
            let bytes = std::fs::read(&path).unwrap();
            let chunkings: &[&[usize]] = if dir == "pcap-bulk" {
                &[&[1, 3, 17, 250, 4093]]
            } else {
                &[&[1], &[5, 16, 3, 1500, 24], &[4096, 1]]
            };
            packets += compare(&bytes, &format!("{dir}/{}", name(&path)), chunkings);
            files += 1;
        }
    }
    assert!(files >= 140 && packets > 40_000, "{files} files, {packets} packets");
}

const SEEDS: &[(&str, &str)] = &[
    ("pcap", "tcpdump__ssh.pcap"),
    ("pcap", "tcpdump__pptp.pcap"),
    ("pcap", "tcpdump__tcp-handshake-nano.pcap"),
    ("pcap", "pcapplusplus__nanosecs_big_endian.pcap"),
    ("pcap", "pcapplusplus__microsecs_big_endian.pcap"),
    ("pcap", "pcapng-testsuite__test102_le.pcapng"),
    ("pcap-malformed", "pcap-parser__modified-format.pcap"),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Mutated files (record headers with odd caplen / orig_len /
    /// fractions, cut records) read alike both ways.
    #[test]
    fn fast_and_general_paths_read_mutated_files_alike(
        seed in 0..SEEDS.len(),
        cut in 0.0f64..1.0,
        flips in prop::collection::vec((0.0f64..1.0, 1u8..=255), 0..12),
        sizes in prop::collection::vec(1usize..64, 1..6),
    ) {
        let (dir, file) = SEEDS[seed];
        let mut bytes = std::fs::read(corpus(dir).join(file)).unwrap();
        for (i, (pos, x)) in flips.iter().enumerate() {
            let span = if i % 2 == 0 { bytes.len().min(512) } else { bytes.len() };
            let at = ((*pos * span as f64) as usize).min(bytes.len().saturating_sub(1));
            bytes[at] ^= x;
        }
        if cut > 0.5 {
            bytes.truncate(((cut - 0.5) * 2.0 * bytes.len() as f64) as usize);
        }
        compare(&bytes, &format!("mutated {file}"), &[&sizes]);
    }
}
