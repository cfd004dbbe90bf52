//! The compiled classifier against the linear reference on the ClassBench
//! 1k and 10k sets of the shared corpus (read in place, never copied).

use std::path::PathBuf;

use netwatch_rules::classbench::{generate_flows, parse_resolved};
use netwatch_rules::{Classifier, CompiledClassifier, CrossProducts, LinearClassifier};

const SETS: [&str; 6] = [
    "neurocuts__acl1_1k",
    "neurocuts__fw1_1k",
    "neurocuts__ipc1_1k",
    "neurocuts__acl1_10k",
    "neurocuts__fw1_10k",
    "neurocuts__ipc1_10k",
];
const FLOWS: usize = 20_000;

fn corpus(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/classbench")
        .join(name)
}

fn check(name: &str) {
    let text = std::fs::read_to_string(corpus(name)).unwrap_or_else(|e| panic!("{}: {e}", corpus(name).display()));
    let rules = parse_resolved(&text).unwrap();
    assert!(rules.len() > 800, "{name}: {} rules", rules.len());
    let compiled = CompiledClassifier::new(&rules);
    let fields = CompiledClassifier::with_cross_products(&rules, CrossProducts::Fields);
    let linear = LinearClassifier::new(rules.clone());
    let flows = generate_flows(&rules, FLOWS, 0x5eed ^ rules.len() as u64);
    let mut out = vec![None; flows.len()];
    let mut out_fields = vec![None; flows.len()];
    compiled.first_match_batch(&flows, &mut out);
    fields.first_match_batch(&flows, &mut out_fields);
    let mut matched = 0;
    for ((k, got), got_fields) in flows.iter().zip(&out).zip(&out_fields) {
        let want = linear.first_match(k);
        assert_eq!(*got, want, "{name}: flow {k:?}");
        assert_eq!(*got_fields, want, "{name}, fields only: flow {k:?}");
        matched += want.is_some() as usize;
    }
    assert!(matched > FLOWS / 2, "{name}: only {matched} flows matched");
}

#[test]
fn classbench_sets_agree() {
    // Two threads: the 10k sets dominate, so pair each with a 1k set.
    std::thread::scope(|s| {
        for pair in [[0, 3, 4], [1, 2, 5]] {
            s.spawn(move || {
                for i in pair {
                    check(SETS[i]);
                }
            });
        }
    });
}
