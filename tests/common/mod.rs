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
