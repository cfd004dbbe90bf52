//! `netwatch flows` on every malformed capture of the corpus: a clean run
//! with warnings naming packet and byte offset, or a one-line error for a
//! broken file header; never a panic.

mod common;

use std::process::Command;

#[test]
fn every_malformed_capture_is_handled() {
    let dir = common::corpus("pcap-malformed");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x != "tsv"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 82, "the corpus has 82 malformed captures");
    let (mut ok, mut errors, mut warned) = (0, 0, 0);
    for f in &files {
        let o = Command::new(env!("CARGO_BIN_EXE_netwatch"))
            .arg("flows")
            .arg(f)
            .args(["-o", "jsonl"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(!err.contains("panicked") && o.status.code().is_some(), "{name}: {err}");
        match o.status.code() {
            Some(0) => {
                ok += 1;
                // Every stdout line is a complete JSON record.
                for l in String::from_utf8_lossy(&o.stdout).lines() {
                    serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}"));
                }
                if err.contains("WARN") {
                    warned += 1;
                    assert!(
                        err.contains(&*name) && err.contains("offset"),
                        "{name}: a warning names file and offset: {err}"
                    );
                }
            }
            Some(1) => {
                errors += 1;
                assert_eq!(err.lines().count(), 1, "{name}: {err}");
                assert!(
                    err.starts_with("error: ") && err.contains(&*name) && err.contains("offset"),
                    "{name}: {err}"
                );
            }
            other => panic!("{name}: exit {other:?}: {err}"),
        }
    }
    // The broken file headers are errors; the rest read with or without warnings.
    assert!(errors >= 5 && ok >= 70 && warned >= 3, "ok {ok}, errors {errors}, warned {warned}");
}
