//! Shared helpers of the integration tests: corpus paths and tshark.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shared corpus, beside the repository (never copied into it).
pub fn corpus(sub: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus")).join(sub)
}

/// Capture files of a corpus directory (MANIFEST.tsv excluded), sorted.
pub fn capture_files(sub: &str) -> Vec<PathBuf> {
    let dir = corpus(sub);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} unreadable: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n != "MANIFEST.tsv"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no capture files in {}", dir.display());
    v
}

pub fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Fails (never skips) when tshark is missing.
pub fn require_tshark() {
    let ok = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "tshark is not installed: these tests compare the decoder with tshark and must not be \
         skipped; run `make test`, which installs it (Debian package tshark)"
    );
}

/// Runs tshark over `file` with fields `fields` (all occurrences, joined by
/// '|'), IP reassembly off; returns one Vec per frame, one String per field.
pub fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file).args([
        "-o",
        "ip.defragment:FALSE",
        "-o",
        "ipv6.defragment:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("running tshark");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}
