//! The decoding thread's per-packet work, without the kernel's read copy
//! (the `Cursor`'s copy into the reader's buffer stands in for it): the
//! corpus capture pcapplusplus__tls2.pcap read into memory once, then
//! (a) `CaptureReader` over an in-memory `Cursor` alone, (b) reader +
//! `decode` (the whole `PacketMeta` kept), (c) reader + `decode_fast`, else
//! `decode_walk`, + `packet_info`, as the decoding thread of `netwatch
//! flows` does before its batch push. Throughput in packets.
//!
//! Besides criterion's means it prints `[decode] summary` lines: the best of
//! several passes in packets per second, the steadier figure on a shared
//! machine.
//!
//! `cargo bench -p netwatch --bench decode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netwatch::watcher::replay::packet_info;
use netwatch_capture::decode::{decode_fast, decode_walk};
use netwatch_capture::{decode, CaptureReader, DecodeOptions};

const PASSES: usize = 100;

fn corpus_bytes() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/pcap-bulk/pcapplusplus__tls2.pcap");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (a) The reader alone: sum of captured lengths.
fn read_only(bytes: &[u8]) -> u64 {
    let mut reader = CaptureReader::new(Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0u64;
    while let Some(Ok(p)) = reader.next_packet() {
        n = n.wrapping_add(u64::from(p.caplen));
        black_box(p.data);
    }
    n
}

/// (b) Reader + decode: a digest of the decoded fields.
fn read_decode(bytes: &[u8], opts: DecodeOptions) -> u64 {
    let mut reader = CaptureReader::new(Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0u64;
    while let Some(Ok(p)) = reader.next_packet() {
        if let Ok(m) = decode(p.link_type, p.data, opts) {
            black_box(&m);
            n = n.wrapping_add(u64::from(m.src_port) ^ u64::from(m.ip_total_len));
        }
    }
    n
}

/// (c) Reader + decode + conversion to the flow table's `PacketInfo`, as
/// the decoding thread of `netwatch flows` does it (fast path first).
fn read_decode_info(bytes: &[u8]) -> u64 {
    let mut reader = CaptureReader::new(Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0u64;
    while let Some(Ok(p)) = reader.next_packet() {
        let info = match decode_fast(p.link_type, p.data) {
            Some(m) => packet_info(p.timestamp_ns, &m),
            None => match decode_walk(p.link_type, p.data, DecodeOptions::default()) {
                Ok(m) => packet_info(p.timestamp_ns, &m),
                Err(_) => continue,
            },
        };
        n = n.wrapping_add(u64::from(black_box(info).dst_port));
    }
    n
}

fn packet_count(bytes: &[u8]) -> u64 {
    let mut reader = CaptureReader::new(Cursor::new(bytes)).unwrap_or_else(|e| panic!("{e}"));
    let mut n = 0;
    while let Some(Ok(_)) = reader.next_packet() {
        n += 1;
    }
    n
}

fn summary(name: &str, packets: u64, mut f: impl FnMut() -> u64) {
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "[decode] summary {name:<22} {:>7.2} Mpkt/s  ({:.1} ns/pkt, best of {PASSES})",
        packets as f64 / best / 1e6,
        best * 1e9 / packets as f64
    );
}

fn bench(c: &mut Criterion) {
    let bytes = corpus_bytes();
    let packets = packet_count(&bytes);
    let decap = DecodeOptions { decap: true };
    summary("read", packets, || read_only(&bytes));
    summary("read+decode", packets, || read_decode(&bytes, DecodeOptions::default()));
    summary("read+decode(decap)", packets, || read_decode(&bytes, decap));
    summary("read+decode+info", packets, || read_decode_info(&bytes));

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(packets));
    g.bench_function("read", |b| b.iter(|| read_only(black_box(&bytes))));
    g.bench_function("read+decode", |b| {
        b.iter(|| read_decode(black_box(&bytes), DecodeOptions::default()))
    });
    g.bench_function("read+decode+info", |b| b.iter(|| read_decode_info(black_box(&bytes))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
