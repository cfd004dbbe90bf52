//! `netwatch evaluate` as a library call: the same replay through the same
//! NSGs, done with `netwatch::watcher` functions, gives the per-rule totals
//! the command prints.

mod common;

use std::process::Command;

use netwatch::watcher::replay::{parse_local, replay, CaptureInput, ReplayOptions};
use netwatch::watcher::verdicts::{prepare_nic, RuleTotals, VerdictRecords};
use netwatch::Environment;
use netwatch_flowlogs::FlowRecordKind;

const CAPTURE: &str = "../shared/corpus/pcap-bulk/pcapplusplus__example.pcap";

/// The command's summary table (stderr), as rows of cells.
fn cli_summary() -> Vec<Vec<String>> {
    let out = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .arg("evaluate")
        .args(common::STRICT_WEB_NIC)
        .arg(CAPTURE)
        .current_dir(common::root())
        .output()
        .expect("run netwatch");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().skip_while(|l| !l.starts_with("Direction")).collect();
    assert!(lines.len() > 1, "no summary table in {err}");
    // Columns are aligned: cut each line at the header's column starts.
    let header = lines[0];
    let starts: Vec<usize> = RuleTotals::HEADER.iter().map(|h| header.find(h).expect("column")).collect();
    lines[1..]
        .iter()
        .map(|l| {
            (0..starts.len())
                .map(|i| {
                    let end = starts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                    l.get(starts[i].min(l.len())..end).unwrap_or("").trim().to_string()
                })
                .collect()
        })
        .collect()
}

#[test]
fn library_totals_equal_the_commands() {
    let root = common::root();
    let mut env = Environment::load(&[root.join("demo/hub-spoke"), root.join("tests/data/nsg-web-nic-strict.json")]).expect("load");
    env.load_service_tags(&root.join("demo/ServiceTags_Demo.json")).expect("tags");
    let local = parse_local(&["10.0.0.6/32".to_string()]).expect("local");
    let (_view, evaluator) = prepare_nic(&env, "nic-web1", Some(local)).expect("nic");
    let mut records = VerdictRecords::new(Some(&evaluator), None, None);
    let mut ended = 0u64;
    let stats = replay(
        &[CaptureInput::File(root.join(CAPTURE))],
        &ReplayOptions::default(),
        |t| evaluator.evaluate(t),
        |r| {
            let id = records.record(&r);
            let (nsg, rule) = records.names(id).expect("names of a number record gave").clone();
            if matches!(r.kind, FlowRecordKind::End(_)) {
                ended += 1;
                // Names come with every decided flow of the NIC.
                assert_eq!(nsg.is_some(), r.user.decided_by.is_some());
                assert_eq!(rule.is_some(), r.user.decided_by.is_some());
            }
        },
    )
    .expect("replay");
    assert!(stats.packets > 0);
    let summary = records.finish().expect("finish");
    assert_eq!(summary.flows(), ended);
    let totals: &[RuleTotals] = &summary.totals;
    // The strict NSG denies some flows and allows others: both kinds occur.
    assert!(totals.iter().any(|t| t.access == "Deny"), "{totals:?}");
    assert!(totals.iter().any(|t| t.access == "Allow"), "{totals:?}");
    let ours: Vec<Vec<String>> = totals.iter().map(|t| t.cells().to_vec()).collect();
    assert_eq!(ours, cli_summary());
}
