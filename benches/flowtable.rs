//! The flow table alone: packets already decoded, in memory, through
//! `FlowTable::observe` (what the flow-table thread of `netwatch flows` /
//! `evaluate` does per packet).
//!
//! The traffic mirrors `benches/compare.sh`: the corpus capture
//! pcapplusplus__tls2.pcap in `COPIES` copies, copy k with its addresses
//! rewritten by a per-copy bijection (as `tcprewrite --seed k` does), merged
//! by time (each packet followed by its copies, as mergecap's chronological
//! merge of copies with equal timestamps gives): ~600k packets over ~27k
//! concurrent flows, whose state does not fit in L2.
//!
//! Besides criterion's means it prints `[flowtable] summary` lines: the best
//! of several passes in packets per second, the steadier figure on a shared
//! machine.
//!
//! `cargo bench -p netwatch --bench flowtable -- --warm-up-time 1 --measurement-time 3`

use std::fs::File;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use netwatch::watcher::replay::packet_info;
use netwatch_capture::{decode, CaptureReader, DecodeOptions};
use netwatch_flowlogs::{FlowRecord, FlowRecordKind, FlowTable, FlowTableConfig, PacketInfo};

const COPIES: u32 = 80;
const PASSES: usize = 9;

/// The corpus capture's IP packets.
fn corpus_packets() -> Vec<PacketInfo> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/pcap-bulk/pcapplusplus__tls2.pcap");
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = CaptureReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Ok(meta) = decode(p.link_type, p.data, DecodeOptions::default()) {
            out.push(packet_info(p.timestamp_ns, &meta));
        }
    }
    out
}

/// Copy `k`'s address for `ip`: a bijection per copy (xor with a
/// copy-specific mask), so copies never share flows.
fn rewrite(ip: IpAddr, k: u32) -> IpAddr {
    let mask = k.wrapping_mul(0x9e37_79b9) | 1;
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) ^ mask)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) ^ u128::from(mask))),
    }
}

fn traffic() -> Vec<PacketInfo> {
    let base = corpus_packets();
    let mut out = Vec::with_capacity(base.len() * COPIES as usize);
    for p in &base {
        for k in 0..COPIES {
            out.push(PacketInfo {
                src: rewrite(p.src, k),
                dst: rewrite(p.dst, k),
                ..*p
            });
        }
    }
    out
}

/// Packets per `observe_batch` call, as the replay pipeline hands them over.
const BATCH: usize = 1024;

fn table() -> FlowTable<u32> {
    match FlowTable::new(FlowTableConfig::default()) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn is_end(r: &FlowRecord<u32>) -> usize {
    usize::from(matches!(r.kind, FlowRecordKind::End(_)))
}

/// One replay through a fresh table, packet by packet; returns the number
/// of flow ends.
fn replay(packets: &[PacketInfo]) -> usize {
    let mut table = table();
    let mut ends = 0usize;
    for p in packets {
        table.observe(black_box(p), |_, _| 7);
        for r in table.drain_records() {
            ends += is_end(&r);
        }
    }
    table.finish_each(|_| ends += 1);
    ends
}

/// The same with `observe_batch`.
fn replay_batched(packets: &[PacketInfo]) -> usize {
    let mut table = table();
    let mut ends = 0usize;
    for batch in packets.chunks(BATCH) {
        table.observe_batch(black_box(batch), |_, _| 7, |r| ends += is_end(&r));
    }
    table.finish_each(|_| ends += 1);
    ends
}

/// Best of `PASSES` runs of `f`, in seconds.
fn best_of(f: impl Fn() -> usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..PASSES {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn bench(c: &mut Criterion) {
    let packets = traffic();
    let flows = replay(&packets);
    assert_eq!(flows, replay_batched(&packets), "observe_batch ends other flows than observe");
    println!("[flowtable] {} packets, {flows} flows; best of {PASSES} passes:", packets.len());
    // Interleaved, so that a noisy moment hits both alike.
    let (mut single, mut batched) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        single = single.min(best_of(|| replay(&packets)));
        batched = batched.min(best_of(|| replay_batched(&packets)));
    }
    for (name, best) in [("observe", single), ("observe_batch", batched)] {
        println!(
            "[flowtable] summary {name:>13}: {:.1} ms = {:.1} M packets/s ({:.0} ns/packet)",
            best * 1e3,
            packets.len() as f64 / best / 1e6,
            best * 1e9 / packets.len() as f64
        );
    }
    let mut g = c.benchmark_group("flowtable");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.sample_size(10);
    g.bench_function("observe", |b| b.iter(|| replay(&packets)));
    g.bench_function("observe_batch", |b| b.iter(|| replay_batched(&packets)));
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
