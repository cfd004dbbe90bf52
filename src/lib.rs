//! netwatch: an offline Azure Network Watcher.
//!
//! The library behind the `netwatch` binary: [`azure`] loads real Azure
//! resource JSON, [`watcher`] answers Network Watcher's questions over it.
#![forbid(unsafe_code)]

pub mod azure;
pub mod files;
pub mod watcher;

pub use azure::{Environment, LoadError};

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
