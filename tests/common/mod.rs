//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use netwatch::Environment;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the shared corpus (never copied into the repo).
pub fn corpus(rel: &str) -> PathBuf {
    root().join("../shared/corpus").join(rel)
}

/// The real Azure Public service tags download from the corpus.
pub fn real_service_tags() -> PathBuf {
    let p = corpus("azure/ServiceTags_Public_20251028.json.gz");
    assert!(
        p.exists(),
        "corpus file {} is missing: the tests need ../shared/corpus beside the repository",
        p.display()
    );
    p
}

/// The hub-and-spoke environment in the REST shape (the bundled demo).
pub fn rest_env() -> Environment {
    let mut env = Environment::load(&[root().join("demo/hub-spoke")]).expect("load REST-shape environment");
    env.load_service_tags(&real_service_tags()).expect("load service tags");
    env
}

/// The same environment in the az CLI shape.
pub fn cli_env() -> Environment {
    let mut env = Environment::load(&[root().join("tests/data/hub-spoke-cli")]).expect("load az-CLI-shape environment");
    env.load_service_tags(&real_service_tags()).expect("load service tags");
    env
}

/// The demo environment with nic-web1's NSG replaced by a stricter copy (a
/// later file wins) that denies HTTP to half the Internet, so both NSGs
/// decide some flows of the corpus capture; the NIC taken as 10.0.0.6.
/// `evaluate` arguments before the capture files.
pub const STRICT_WEB_NIC: &[&str] = &[
    "--resources",
    "demo/hub-spoke",
    "--resources",
    "tests/data/nsg-web-nic-strict.json",
    "--service-tags",
    "demo/ServiceTags_Demo.json",
    "--nic",
    "nic-web1",
    "--local",
    "10.0.0.6/32",
];
