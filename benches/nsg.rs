//! NSG first-match classification: the compiled classifier against the linear
//! reference on ClassBench sets (shared corpus, read in place).
//!
//! Per set (acl1, fw1, ipc1), throughput in evaluations per second over a
//! batch of 4096 pre-generated flows (7/8 trace-like, 1/8 uniform; see
//! `netwatch_rules::classbench::generate_flows`), each rule subset queried
//! with flows generated from that subset:
//! - `compiled/10`, `compiled/100`, `compiled/1k`, `compiled/10k`;
//! - `compiled_batch/1k` (`first_match_batch`);
//! - `linear/1k` (the reference scan).
//!
//! `cargo bench -p netwatch --bench nsg -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netwatch_rules::classbench::{generate_flows, parse_resolved};
use netwatch_rules::{Classifier, CompiledClassifier, FlowKey, LinearClassifier, ResolvedRule};

const BATCH: usize = 4096;
const SEED: u64 = 0x6e73_6762;

fn load(name: &str) -> Vec<ResolvedRule> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/classbench")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_resolved(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run<C: Classifier>(c: &C, flows: &[FlowKey]) -> usize {
    let mut acc = 0usize;
    for k in flows {
        acc = acc.wrapping_add(c.first_match(black_box(k)).unwrap_or(usize::MAX));
    }
    acc
}

fn bench_sets(cr: &mut Criterion) {
    for set in ["acl1", "fw1", "ipc1"] {
        let rules_1k = load(&format!("neurocuts__{set}_1k"));
        let rules_10k = load(&format!("neurocuts__{set}_10k"));
        let mut g = cr.benchmark_group(format!("nsg/{set}"));
        g.throughput(Throughput::Elements(BATCH as u64));

        let subsets: [(&str, &[ResolvedRule]); 4] = [
            ("10", &rules_1k[..10]),
            ("100", &rules_1k[..100]),
            ("1k", &rules_1k[..]),
            ("10k", &rules_10k[..]),
        ];
        for (label, rules) in subsets {
            let flows = generate_flows(rules, BATCH, SEED);
            let compiled = CompiledClassifier::new(rules);
            g.bench_with_input(BenchmarkId::new("compiled", label), &flows, |b, flows| {
                b.iter(|| run(&compiled, flows))
            });
            if label == "1k" {
                let mut out = vec![None; flows.len()];
                g.bench_with_input(BenchmarkId::new("compiled_batch", label), &flows, |b, flows| {
                    b.iter(|| {
                        compiled.first_match_batch(black_box(flows), &mut out);
                        out[out.len() - 1]
                    })
                });
                let linear = LinearClassifier::new(rules.to_vec());
                g.bench_with_input(BenchmarkId::new("linear", label), &flows, |b, flows| b.iter(|| run(&linear, flows)));
            }
        }
        g.finish();
    }
}

/// Build time and size, printed once (not a criterion measurement).
fn report_build() {
    for set in ["acl1", "fw1", "ipc1"] {
        for size in ["1k", "10k"] {
            let rules = load(&format!("neurocuts__{set}_{size}"));
            let t = std::time::Instant::now();
            let c = CompiledClassifier::new(&rules);
            let dt = t.elapsed();
            let s = c.stats();
            eprintln!(
                "build {set}_{size}: {} rules, {:.1} ms, {:.2} MiB, classes proto/src/sport/dst/dport {:?}",
                s.rules,
                dt.as_secs_f64() * 1e3,
                s.memory_bytes as f64 / (1024.0 * 1024.0),
                s.classes
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    report_build();
    bench_sets(c);
}

criterion_group!(nsg, benches);
criterion_main!(nsg);
