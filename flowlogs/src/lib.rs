//! netwatch-flowlogs: flow table, flow states, NSG flow log writers and
//! standard flow export.
#![forbid(unsafe_code)]
