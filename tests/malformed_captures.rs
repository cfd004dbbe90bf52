//! `netwatch flows` on every malformed capture of the corpus: a clean run
//! with warnings naming packet and byte offset, or a one-line error for a
//! broken file header; never a panic.

mod common;

use std::collections::HashMap;
use std::process::Command;

/// The files whose container header is broken (the reader's own test,
/// capture/tests/malformed.rs, checks their messages): `flows` exits 1.
/// Every other file reads to the end: exit 0.
const HEADER_ERRORS: &[&str] = &[
    "libpcap__linktype-reserved-field-not-zero.pcap",
    "libpcap__pcap-invalid-version-1.pcap",
    "libpcap__pcapng-invalid-vers-1.pcapng",
    "libpcap__pcapng-invalid-vers-2.pcapng",
    "libpcap__shb-option-too-long.pcapng",
    "pcap-parser__err-eof.bin",
];

/// Records per file as the corpus manifest counts them (records_parsed).
fn manifest_counts() -> HashMap<String, u64> {
    let path = common::corpus("pcap-malformed").join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let n = f
                .get(6)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("MANIFEST.tsv: no record count in {l:?}"));
            (f[0].to_string(), n)
        })
        .collect()
}

/// The packet count of `flows`' summary line ("N flows, M packets (...)").
fn summary_packets(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.contains(" flows, ") && l.contains(" packets"))?;
    line.split(", ").nth(1)?.split(' ').next()?.parse().ok()
}

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
    let counts = manifest_counts();
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
        let header_error = HEADER_ERRORS.contains(&&*name);
        match o.status.code() {
            Some(0) if !header_error => {
                ok += 1;
                let want = counts.get(&*name).unwrap_or_else(|| panic!("{name}: not in MANIFEST.tsv"));
                assert_eq!(summary_packets(&err), Some(*want), "{name}: packets read, stderr: {err}");
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
            Some(1) if header_error => {
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
    assert_eq!((errors, ok), (HEADER_ERRORS.len(), files.len() - HEADER_ERRORS.len()));
    assert!(warned >= 3, "{warned} files with warnings");
}
