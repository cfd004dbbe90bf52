//! netwatch-routing: Azure routes and route precedence, longest-prefix-match
//! tables for IPv4 and IPv6, next hop. Pure: no I/O.
#![deny(unsafe_code)] // one audited exception: lpm::fast (POPCNT dispatch)
#![warn(missing_docs)]

pub mod lpm;

pub use ipnet;
pub use lpm::{Lpm4, Lpm4Builder, Lpm6, Lpm6Builder, LpmBuilder, LpmError, LpmKey, LpmMatch, LpmTable, BATCH_LANES, MAX_PREFIXES};
