//! Every file of pcap-malformed/ is handled without panicking: a clear error
//! for a broken file header, otherwise its packets (decoded with and without
//! decapsulation) plus warnings. Also synthetic mid-file damage.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{capture_files, corpus, name};
use netwatch_capture::decode::{decode, DecodeOptions};
use netwatch_capture::file::{CaptureReader, ReadError, ReaderOptions, Warning};

/// Files whose container header is broken, with a piece of the expected message.
const HEADER_ERRORS: &[(&str, &str)] = &[
    ("libpcap__linktype-reserved-field-not-zero.pcap", "reserved bits set"),
    ("libpcap__pcap-invalid-version-1.pcap", "unsupported pcap version 1.4"),
    ("libpcap__pcapng-invalid-vers-1.pcapng", "unsupported pcapng section version 0.1"),
    ("libpcap__pcapng-invalid-vers-2.pcapng", "unsupported pcapng section version 1.1"),
    ("libpcap__shb-option-too-long.pcapng", "block 1 at byte offset 0"),
    ("pcap-parser__err-eof.bin", "unknown magic number"),
];

struct Outcome {
    packets: u64,
    warnings: Vec<String>,
    fatal: bool,
}

fn run(bytes: &[u8], opts: ReaderOptions) -> Result<Outcome, ReadError> {
    let mut r = CaptureReader::with_options(bytes, opts)?;
    let mut packets = 0;
    while let Some(p) = r.next_packet() {
        let p = p?;
        packets += 1;
        for decap in [false, true] {
            let _ = decode(p.link_type, p.data, DecodeOptions { decap });
        }
    }
    Ok(Outcome {
        packets,
        fatal: r.warnings().iter().any(Warning::is_fatal),
        warnings: r.warnings().iter().map(|w| w.to_string()).collect(),
    })
}

fn manifest_counts() -> HashMap<String, u64> {
    let text = std::fs::read_to_string(corpus("pcap-malformed").join("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((f.first()?.to_string(), f.get(6)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn every_malformed_file_is_handled() {
    let counts = manifest_counts();
    let mut failures = Vec::new();
    let files = capture_files("pcap-malformed");
    for path in &files {
        let file = name(path);
        let bytes = std::fs::read(path).unwrap();
        let res = catch_unwind(AssertUnwindSafe(|| run(&bytes, ReaderOptions::default())));
        let res = match res {
            Ok(r) => r,
            Err(_) => {
                failures.push(format!("{file}: PANIC"));
                continue;
            }
        };
        match (HEADER_ERRORS.iter().find(|h| h.0 == file), res) {
            (Some((_, want)), Err(e)) => {
                let msg = e.to_string();
                if !msg.contains(want) || !msg.contains("byte offset") {
                    failures.push(format!("{file}: error {msg:?} should name the offset and say {want:?}"));
                }
            }
            (Some(_), Ok(o)) => failures.push(format!("{file}: expected a header error, read {} packets", o.packets)),
            (None, Err(e)) => failures.push(format!("{file}: unexpected error: {e}")),
            (None, Ok(o)) => {
                if o.fatal {
                    failures.push(format!("{file}: reader stopped: {:?}", o.warnings));
                }
                match counts.get(&file) {
                    Some(&n) if n == o.packets => {}
                    other => failures.push(format!("{file}: {} packets, manifest says {other:?}", o.packets)),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

fn malformed(file: &str) -> Outcome {
    let bytes = std::fs::read(corpus("pcap-malformed").join(file)).unwrap();
    run(&bytes, ReaderOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn file_level_oddities_become_warnings() {
    let o = malformed("tcpdump__timestamp_invalid_micro.pcap");
    assert_eq!(o.packets, 3);
    assert!(
        o.warnings
            .iter()
            .any(|w| w.starts_with("packet 2 at byte offset") && w.contains(">= 1000000")),
        "{:?}",
        o.warnings
    );
    let o = malformed("tcpdump__timestamp_invalid_nano.pcap");
    assert!(o.warnings.iter().any(|w| w.contains(">= 1000000000")), "{:?}", o.warnings);
    let o = malformed("tcpdump__pim_header_asan-2.pcap");
    assert!(
        o.warnings
            .iter()
            .any(|w| w.starts_with("packet 3 ") && w.contains("> original length")),
        "{:?}",
        o.warnings
    );
    // pcap 2.5 is read as 2.4 (like Wireshark), with a warning.
    let o = malformed("libpcap__pcap-invalid-version-2.pcap");
    assert_eq!(o.packets, 1);
    assert!(o.warnings.iter().any(|w| w.contains("version 2.5")), "{:?}", o.warnings);
    // Snaplen 53 but a 98-byte record, and the FCS bit in the link type.
    let o = malformed("tcpdump__bootp_asan.pcap");
    assert_eq!(o.packets, 1);
    assert!(o.warnings.iter().any(|w| w.contains("> snaplen 53")), "{:?}", o.warnings);
}

#[test]
fn kuznetzov_modified_pcap() {
    let bytes = std::fs::read(corpus("pcap-malformed").join("pcap-parser__modified-format.pcap")).unwrap();
    let mut r = CaptureReader::new(&bytes[..]).unwrap();
    let p = r.next_packet().unwrap().unwrap();
    let m = decode(p.link_type, p.data, DecodeOptions::default()).unwrap();
    assert_eq!(
        (m.src.to_string(), m.dst.to_string(), m.protocol),
        ("10.154.0.3".into(), "8.8.8.8".into(), 1)
    );
    assert_eq!(m.icmp.map(|i| (i.icmp_type, i.echo_id)), Some((8, Some(0x0fd7))));
    assert!(r.next_packet().is_none());
}

fn ssh_bytes() -> Vec<u8> {
    std::fs::read(corpus("pcap").join("tcpdump__ssh.pcap")).unwrap()
}

/// Byte offsets of the records of a file.
fn offsets(bytes: &[u8]) -> Vec<u64> {
    let mut r = CaptureReader::new(bytes).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.unwrap().offset);
    }
    v
}

#[test]
fn absurd_caplen_stops_with_packet_number_and_offset() {
    let mut bytes = ssh_bytes();
    let off = offsets(&bytes)[2] as usize;
    bytes[off + 8..off + 12].copy_from_slice(&70_000u32.to_le_bytes());
    let opts = ReaderOptions {
        max_caplen: 65_535,
        ..ReaderOptions::default()
    };
    let o = run(&bytes, opts.clone()).unwrap();
    assert_eq!(o.packets, 2);
    let want = format!("packet 3 at byte offset {off}: record header says caplen 70000 > maximum 65535");
    assert!(o.warnings.iter().any(|w| w.starts_with(&want)), "{:?}", o.warnings);
    // Strict mode returns it as an error instead.
    let mut r = CaptureReader::with_options(&bytes[..], ReaderOptions { strict: true, ..opts }).unwrap();
    assert!(r.next_packet().unwrap().is_ok());
    assert!(r.next_packet().unwrap().is_ok());
    let e = r.next_packet().unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            ReadError::CaplenTooLarge {
                packet: 3,
                caplen: 70_000,
                ..
            }
        ),
        "{e}"
    );
    assert!(r.next_packet().is_none());
    // 4 GiB caplen with the default maximum: no allocation, same stop.
    bytes[off + 8..off + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(run(&bytes, ReaderOptions::default()).unwrap().packets, 2);
}

#[test]
fn truncation_mid_record_keeps_earlier_packets() {
    let bytes = ssh_bytes();
    let offs = offsets(&bytes);
    assert_eq!(offs.len(), 54);
    // Cut inside the 10th record's data, then inside its header.
    for cut in [offs[9] as usize + 20, offs[9] as usize + 7] {
        let o = run(&bytes[..cut], ReaderOptions::default()).unwrap();
        assert_eq!(o.packets, 9);
        assert!(o.fatal);
        let w = o.warnings.last().unwrap();
        assert!(
            w.starts_with(&format!("packet 10 at byte offset {}: truncated record", offs[9])),
            "{w}"
        );
    }
    // A cut exactly at a record boundary is a clean end.
    let o = run(&bytes[..offs[9] as usize], ReaderOptions::default()).unwrap();
    assert_eq!((o.packets, o.fatal), (9, false));
    // Truncated file headers are hard errors.
    for cut in [0, 3, 10, 23] {
        let e = CaptureReader::new(&bytes[..cut]).err().unwrap();
        assert!(e.to_string().contains("byte offset 0"), "{e}");
    }
}

#[test]
fn pcapng_damage_mid_file() {
    let bytes = std::fs::read(corpus("pcap").join("pcapng-testsuite__test001_le.pcapng")).unwrap();
    let offs = offsets(&bytes);
    assert_eq!(offs.len(), 4);
    // Trailing block length of the 3rd packet block changed.
    let mut b = bytes.clone();
    let len = u32::from_le_bytes(b[offs[2] as usize + 4..offs[2] as usize + 8].try_into().unwrap()) as usize;
    let t = offs[2] as usize + len - 4;
    b[t] ^= 0xFF;
    let o = run(&b, ReaderOptions::default()).unwrap();
    assert_eq!(o.packets, 2);
    assert!(
        o.warnings.last().unwrap().contains("trailing block total length"),
        "{:?}",
        o.warnings
    );
    // Interface id beyond the section's interfaces.
    let mut b = bytes.clone();
    b[offs[1] as usize + 8] = 7;
    let o = run(&b, ReaderOptions::default()).unwrap();
    assert_eq!(o.packets, 1);
    assert!(
        o.warnings.last().unwrap().contains("interface id 7 is not defined"),
        "{:?}",
        o.warnings
    );
}

/// A reader that returns one byte per call, like a slow pipe.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(out)) => {
                *out = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn streaming_from_a_pipe_matches_a_file() {
    for (dir, f) in [("pcap", "tcpdump__ssh.pcap"), ("pcap", "pcapng-testsuite__test202_be.pcapng")] {
        let bytes = std::fs::read(corpus(dir).join(f)).unwrap();
        let mut a = CaptureReader::new(&bytes[..]).unwrap();
        let mut b = CaptureReader::new(Trickle(&bytes)).unwrap();
        loop {
            match (a.next_packet(), b.next_packet()) {
                (None, None) => break,
                (Some(Ok(x)), Some(Ok(y))) => {
                    assert_eq!(
                        (x.number, x.offset, x.timestamp_ns, x.data),
                        (y.number, y.offset, y.timestamp_ns, y.data)
                    );
                }
                _ => panic!("{f}: streams differ"),
            }
        }
    }
}

/// A stop after more warnings than are kept is still reported: the reader's
/// last warning says where it stopped, and the others are counted.
#[test]
fn the_stop_is_kept_beyond_the_warning_cap() {
    let mut bytes = ssh_bytes();
    let offs = offsets(&bytes);
    assert!(offs.len() > 6, "{} records", offs.len());
    // Microsecond fractions of 1,000,000 or more: one warning per record.
    for &o in &offs[..5] {
        let o = o as usize;
        bytes[o + 4..o + 8].copy_from_slice(&1_500_000u32.to_le_bytes());
    }
    let stop = offs[5] as usize;
    bytes[stop + 8..stop + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let opts = ReaderOptions {
        max_warnings: 3,
        ..ReaderOptions::default()
    };
    let mut r = CaptureReader::with_options(&bytes[..], opts).unwrap();
    let mut packets = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        packets += 1;
    }
    assert_eq!(packets, 5);
    let w = r.warnings();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[..3].iter().all(|w| !w.is_fatal()), "{w:?}");
    assert!(w[3].is_fatal() && w[3].to_string().starts_with("packet 6 at byte offset"), "{w:?}");
    assert_eq!(r.warnings_dropped(), 2);
}
