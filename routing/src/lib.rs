//! netwatch-routing: Azure routes and route precedence, longest-prefix-match
//! tables for IPv4 and IPv6, next hop. Pure: no I/O.
//!
//! * [`lpm`]: [`Lpm4`] / [`Lpm6`], poptrie longest-prefix-match tables
//!   generic over the value, built once by [`LpmBuilder`].
//! * [`model`]: Azure's route vocabulary ([`NextHopType`], [`RouteSource`],
//!   [`RouteState`], [`Route`], [`EffectiveRoute`], [`NextHopResult`]).
//! * [`effective`]: [`effective_routes`] builds a subnet's
//!   [`EffectiveRouteTable`] (spec §5) and answers
//!   [`EffectiveRouteTable::next_hop`] (spec §4); [`check_route_table`]
//!   checks a route table on its own (spec §5.3), as soon as it is read.
//!
//! The crate denies `unsafe` except in one audited spot, `lpm::fast`, which
//! calls POPCNT-compiled copies of the lookup after checking the CPU has
//! POPCNT, and wraps the x86_64 prefetch hint used by the batched IPv4
//! lookup (measured gains; see that module).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod effective;
pub mod lpm;
pub mod model;

pub use effective::{
    check_route_table, effective_routes, Candidate, CandidateOutcome, CheckedRoute, EffectiveRouteTable, GatewayRoute, NextHop,
    RouteDestination, RouteError, RouteErrorSite, RouteField, RouteTableInput, ServiceEndpointRoute, SubnetRoutingInput, UserRoute,
    MAX_ROUTES_PER_TABLE, MAX_SERVICE_TAG_ROUTES_PER_TABLE, RESERVED_NONE_PREFIXES,
};
pub use ipnet;
pub use lpm::{Lpm4, Lpm4Builder, Lpm6, Lpm6Builder, LpmBuilder, LpmError, LpmHit, LpmKey, LpmMatch, LpmTable, BATCH_LANES, MAX_PREFIXES};
pub use model::{
    EffectiveRoute, InvalidReason, NextHopResult, NextHopType, Route, RouteSource, RouteState, UnknownNextHopType, SYSTEM_ROUTE,
};
