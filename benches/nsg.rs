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
//! Criterion measures wall-clock means, which on a shared, oversubscribed
//! machine include time the thread spent descheduled. So the bench also
//! prints a per-core summary table first: for each case, the fastest of many
//! short passes over the batch (about 0.1 ms each for the compiled
//! classifier), which approximates the rate of one core that is not shared.
//!
//! `cargo bench -p netwatch --bench nsg -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use netwatch_rules::classbench::{generate_flows, parse_resolved};
use netwatch_rules::{Classifier, CompiledClassifier, CrossProducts, FlowKey, LinearClassifier, ResolvedRule};

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

/// Build time and size of both builds ([`CrossProducts`]), printed once
/// (not a criterion measurement).
fn report_build() {
    for set in ["acl1", "fw1", "ipc1"] {
        for size in ["1k", "10k"] {
            let rules = load(&format!("neurocuts__{set}_{size}"));
            for cross in [CrossProducts::Full, CrossProducts::Fields] {
                let t = std::time::Instant::now();
                let c = CompiledClassifier::with_cross_products(&rules, cross);
                let dt = t.elapsed();
                let s = c.stats();
                eprintln!(
                    "build {set}_{size} ({cross:?}): {} rules, {:.1} ms, {:.2} MiB, classes proto/src/sport/dst/dport {:?}",
                    s.rules,
                    dt.as_secs_f64() * 1e3,
                    s.memory_bytes as f64 / (1024.0 * 1024.0),
                    s.classes
                );
            }
        }
    }
}

/// Nanoseconds per evaluation: the fastest of `trials` passes over `flows`.
fn best_ns(trials: usize, flows: &[FlowKey], mut pass: impl FnMut(&[FlowKey]) -> usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..trials {
        let t = std::time::Instant::now();
        black_box(pass(black_box(flows)));
        best = best.min(t.elapsed().as_nanos() as f64 / flows.len() as f64);
    }
    best
}

/// The per-core summary table (markdown), printed before the criterion runs.
fn summary() {
    println!(
        "| set | rules | compiled Melem/s | compiled batch Melem/s | fields only Melem/s | linear Melem/s | compiled / linear | compiled 1k / 10 rules |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for set in ["acl1", "fw1", "ipc1"] {
        let rules_1k = load(&format!("neurocuts__{set}_1k"));
        let rules_10k = load(&format!("neurocuts__{set}_10k"));
        let mut at_10 = 0.0;
        let cases: [(&[ResolvedRule], bool); 4] = [
            (&rules_1k[..10], false),
            (&rules_1k[..100], false),
            (&rules_1k[..], true),
            (&rules_10k[..], false),
        ];
        for (rules, with_linear) in cases {
            let flows = generate_flows(rules, BATCH, SEED);
            let compiled = CompiledClassifier::new(rules);
            let mut out = vec![None; flows.len()];
            let c = 1e3 / best_ns(300, &flows, |f| run(&compiled, f));
            let b = 1e3
                / best_ns(300, &flows, |f| {
                    compiled.first_match_batch(f, &mut out);
                    out.len()
                });
            let fields = CompiledClassifier::with_cross_products(rules, CrossProducts::Fields);
            let fo = 1e3 / best_ns(300, &flows, |f| run(&fields, f));
            if rules.len() == 10 {
                at_10 = c;
            }
            let (lin, ratio, vs10) = if with_linear {
                let linear = LinearClassifier::new(rules.to_vec());
                let l = 1e3 / best_ns(15, &flows, |f| run(&linear, f));
                (format!("{l:.2}"), format!("{:.0}x", c / l), format!("{:.2}x", at_10 / c))
            } else {
                ("".into(), "".into(), "".into())
            };
            println!("| {set} | {} | {c:.1} | {b:.1} | {fo:.1} | {lin} | {ratio} | {vs10} |", rules.len());
        }
    }
}

criterion_group!(nsg, bench_sets);

fn main() {
    // `cargo bench` passes `--bench`; skip the extras when criterion is only
    // listing or testing benchmarks.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--list" || a == "--test") {
        report_build();
        summary();
    }
    nsg();
    Criterion::default().configure_from_args().final_summary();
}
