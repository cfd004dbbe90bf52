//! A subnet's effective route table and next hop (spec §5, §4, §13.3).
//!
//! [`effective_routes`] turns plain inputs (the root crate maps Azure
//! resources onto [`SubnetRoutingInput`]) into an [`EffectiveRouteTable`]:
//! every route with state `Active` or `Invalid`, in listing order, plus a
//! longest-prefix-match index over the active routes for
//! [`EffectiveRouteTable::next_hop`].
//!
//! Listing order (Azure's own is undocumented; this follows real
//! `show-effective-route-table` dumps: system routes, then gateway routes,
//! then user routes):
//! 1. `Default` `VnetLocal`, one per VNet address-space range, input order;
//! 2. `Default` `0.0.0.0/0` `Internet`;
//! 3. `Default` `None` for 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
//!    100.64.0.0/10 (the §5.1 table's order), each unless a VNet range
//!    equals it (that range's `VnetLocal` route replaces it) or contains it,
//!    and all four unless the route table has a `0.0.0.0/0` user route
//!    (decision 7);
//! 4. `Default` `::/0` `Internet` when the VNet has IPv6 address space;
//! 5. `Default` `VNetPeering`, one per range of each connected peering;
//! 6. `Default` `VirtualNetworkServiceEndpoint`, one per prefix of each
//!    service endpoint, endpoint by endpoint, each endpoint's prefixes in
//!    the order given (the effective routes list shows each endpoint as
//!    one element with all its prefixes, [`EffectiveRouteTable::listing`]);
//! 7. `VirtualNetworkGateway` routes, unless `disableBgpRoutePropagation`;
//! 8. `User` routes, in route-table order.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::lpm::{Lpm4, Lpm4Builder, Lpm6, Lpm6Builder, LpmError};
use crate::model::{EffectiveRoute, InvalidReason, ListedRoutes, NextHopResult, NextHopType, Route, RouteSource, RouteState};

/// Routes per route table (spec §5.3, from the LIMITS source).
pub const MAX_ROUTES_PER_TABLE: usize = 400;

/// Routes with a service-tag `addressPrefix` per route table (spec §5.3).
pub const MAX_SERVICE_TAG_ROUTES_PER_TABLE: usize = 25;

/// The reserved prefixes that get a `None` system route (spec §5.1).
pub const RESERVED_NONE_PREFIXES: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/// Everything that determines one subnet's routes. Plain data: the root
/// crate maps VNets, peerings, gateways, route tables and service endpoints
/// onto it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubnetRoutingInput {
    /// The VNet's address space (`addressSpace.addressPrefixes`).
    pub vnet_address_space: Vec<IpNet>,
    /// Address spaces of the peered VNets, one entry per peering whose
    /// state is `Connected` (others must be left out).
    pub peerings: Vec<Vec<IpNet>>,
    /// Routes through the VNet's gateway (or a peer's, when the VNet uses
    /// remote gateways): local network gateway address spaces and BGP
    /// learned prefixes (decision 8).
    pub gateway_routes: Vec<GatewayRoute>,
    /// The service endpoints enabled on this subnet, each with its
    /// service's prefixes (the service tag's prefixes, spec §5.2).
    pub service_endpoint_routes: Vec<ServiceEndpointRoute>,
    /// The subnet's route table, if any (zero or one, spec §5.3).
    pub route_table: Option<RouteTableInput>,
    /// Prefixes of the service tags that user routes may name as
    /// `addressPrefix` (spec §5.3), keyed by tag name (matched
    /// case-insensitively, decision 4). Only needed when a route uses a tag.
    pub service_tags: BTreeMap<String, Vec<IpNet>>,
    /// An ExpressRoute gateway serves the VNet (its own, or a peer's used
    /// through `useRemoteGateways`), alone or beside a VPN gateway: user
    /// routes to `VirtualNetworkGateway` are then not valid (spec §5.3).
    pub express_route_gateway: bool,
}

/// A route through the virtual network gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRoute {
    /// Destination prefix.
    pub address_prefix: IpNet,
    /// The gateway's addresses toward it: every instance of the gateway
    /// that has the route (an active-active gateway has two), in instance
    /// order. One route per prefix and gateway: Azure lists one, with all
    /// its next hops (spec §5.5). Empty when not known.
    pub next_hop_ips: Vec<IpAddr>,
    /// Learned through an ExpressRoute gateway (not a VPN gateway): a
    /// virtual appliance reachable only this way is not a valid next hop.
    pub express_route: bool,
}

/// The system route of one service endpoint of the subnet (spec §5.2:
/// next hop `VirtualNetworkServiceEndpoint`, the service's prefixes). Azure
/// lists it as one element whose `addressPrefix` holds all the prefixes
/// (spec §5.4 table, row 10; §5.5); longest-prefix match uses each prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEndpointRoute {
    /// The endpoint's `service`, e.g. `Microsoft.Storage`: what ties its
    /// prefixes together in the listing.
    pub service: String,
    /// The service's prefixes, in the order the listing shows them (host
    /// bits clear).
    pub address_prefixes: Vec<IpNet>,
}

impl ServiceEndpointRoute {
    /// Convenience constructor.
    pub fn new(service: &str, address_prefixes: Vec<IpNet>) -> Self {
        Self {
            service: service.to_owned(),
            address_prefixes,
        }
    }
}

/// The subnet's route table (spec §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTableInput {
    /// Resource ID (or name), used in errors and as `routeTableId`.
    pub id: String,
    /// `disableBgpRoutePropagation`: gateway routes are not added.
    pub disable_bgp_route_propagation: bool,
    /// The table's routes, in order.
    pub routes: Vec<UserRoute>,
}

/// A user-defined route as written in the route table (raw ARM strings,
/// validated by [`check_route_table`] and [`effective_routes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRoute {
    /// Route name.
    pub name: String,
    /// `addressPrefix`: a CIDR with host bits clear, or a service tag name
    /// resolved through [`SubnetRoutingInput::service_tags`].
    pub address_prefix: String,
    /// `nextHopType`, any spelling [`NextHopType`]'s `FromStr` accepts.
    pub next_hop_type: String,
    /// `nextHopIpAddress`; an empty string counts as absent.
    pub next_hop_ip: Option<String>,
    /// `hasBgpOverride`: the route overrides overlapping BGP routes
    /// regardless of longest-prefix match (spec §5.3).
    pub has_bgp_override: bool,
}

impl UserRoute {
    /// Convenience constructor.
    pub fn new(name: &str, address_prefix: &str, next_hop_type: NextHopType, next_hop_ip: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            address_prefix: address_prefix.to_owned(),
            next_hop_type: next_hop_type.as_str().to_owned(),
            next_hop_ip: next_hop_ip.map(str::to_owned),
            has_bgp_override: false,
        }
    }
}

/// Invalid routing input. User-route errors name the route table, the
/// route and the field; [`RouteError::site`] gives the route's index and
/// the field as data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// `addressPrefix` is not a CIDR prefix.
    #[error("route table {route_table}: route {route}: addressPrefix {value:?} is not a valid CIDR prefix (expected a prefix such as 10.0.0.0/16, or a service tag name)")]
    MalformedAddressPrefix {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The value given.
        value: String,
    },
    /// `addressPrefix` names a service tag that is not in
    /// [`SubnetRoutingInput::service_tags`].
    #[error("route table {route_table}: route {route}: addressPrefix {tag:?} is not a known service tag (load the service tags file with --service-tags, or fix the tag name)")]
    UnknownServiceTag {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The tag given.
        tag: String,
    },
    /// More than [`MAX_SERVICE_TAG_ROUTES_PER_TABLE`] service-tag routes.
    #[error("route table {route_table}: {count} routes use a service tag as addressPrefix, more than the limit of {max}")]
    TooManyServiceTagRoutes {
        /// Route table ID.
        route_table: String,
        /// Service-tag routes in the table.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// `addressPrefix` has host bits set.
    #[error("route table {route_table}: route {route}: addressPrefix {value} has host bits set (network is {network})")]
    AddressPrefixHostBits {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The value given.
        value: String,
        /// The prefix with host bits cleared.
        network: IpNet,
    },
    /// `nextHopType` is not a known type.
    #[error("route table {route_table}: route {route}: nextHopType {value:?} is not a known next hop type (expected VirtualNetworkGateway, VnetLocal, Internet, VirtualAppliance or None)")]
    UnknownNextHopType {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The value given.
        value: String,
    },
    /// `nextHopType` cannot be used in a user route.
    #[error("route table {route_table}: route {route}: nextHopType {next_hop_type} is not allowed in a user-defined route (expected VirtualNetworkGateway, VnetLocal, Internet, VirtualAppliance or None)")]
    NextHopTypeNotAllowed {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The type given.
        next_hop_type: NextHopType,
    },
    /// `VirtualAppliance` without `nextHopIpAddress`.
    #[error("route table {route_table}: route {route}: nextHopIpAddress is required when nextHopType is VirtualAppliance")]
    MissingNextHopIp {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
    },
    /// `nextHopIpAddress` given for a type other than `VirtualAppliance`.
    #[error("route table {route_table}: route {route}: nextHopIpAddress {value:?} is allowed only when nextHopType is VirtualAppliance, not {next_hop_type}")]
    NextHopIpNotAllowed {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The type given.
        next_hop_type: NextHopType,
        /// The IP given.
        value: String,
    },
    /// `nextHopIpAddress` is not an IP address.
    #[error("route table {route_table}: route {route}: nextHopIpAddress {value:?} is not a valid IP address (expected the appliance's address, such as 10.0.1.4)")]
    MalformedNextHopIp {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The value given.
        value: String,
    },
    /// `nextHopIpAddress` and `addressPrefix` are of different IP versions.
    #[error(
        "route table {route_table}: route {route}: nextHopIpAddress {next_hop_ip} and addressPrefix {prefix} are of different IP versions"
    )]
    NextHopIpFamilyMismatch {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The prefix.
        prefix: IpNet,
        /// The next hop.
        next_hop_ip: IpAddr,
    },
    /// Two routes of one table have the same `addressPrefix` (the same
    /// CIDR, or the same service tag).
    #[error("route table {route_table}: route {route}: addressPrefix {prefix} is already used by route {other_route}")]
    DuplicateAddressPrefix {
        /// Route table ID.
        route_table: String,
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// The earlier route with that prefix.
        other_route: String,
        /// The prefix or tag, as written.
        prefix: String,
    },
    /// Two routes of one table have the same name (case-insensitive).
    #[error(
        "route table {route_table}: route {route}: name is already used by routes[{other_index}] ({other_route:?}); the names in a table must be unique, without regard to case"
    )]
    DuplicateRouteName {
        /// Route table ID.
        route_table: String,
        /// Index of the (later) route in [`RouteTableInput::routes`].
        index: usize,
        /// Route name.
        route: String,
        /// Index of the earlier route with that name.
        other_index: usize,
        /// Its name as written.
        other_route: String,
    },
    /// More than [`MAX_ROUTES_PER_TABLE`] routes.
    #[error("route table {route_table}: {count} routes, more than the limit of {max}")]
    TooManyRoutes {
        /// Route table ID.
        route_table: String,
        /// Routes in the table.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A system-route input prefix has host bits set.
    #[error("{field}: prefix {value} has host bits set (network is {network})")]
    SystemPrefixHostBits {
        /// `vnetAddressSpace`, `peerings`, `gatewayRoutes` or
        /// `serviceEndpointRoutes`.
        field: &'static str,
        /// The value given.
        value: IpNet,
        /// The prefix with host bits cleared.
        network: IpNet,
    },
    /// Building the lookup index failed.
    #[error(transparent)]
    Lpm(#[from] LpmError),
}

/// A field of a user route, as ARM names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteField {
    /// `name`.
    Name,
    /// `addressPrefix`.
    AddressPrefix,
    /// `nextHopType`.
    NextHopType,
    /// `nextHopIpAddress`.
    NextHopIpAddress,
}

impl RouteField {
    /// The ARM key.
    pub fn arm_name(self) -> &'static str {
        match self {
            RouteField::Name => "name",
            RouteField::AddressPrefix => "addressPrefix",
            RouteField::NextHopType => "nextHopType",
            RouteField::NextHopIpAddress => "nextHopIpAddress",
        }
    }
}

/// Where in a route table a [`RouteError`] is, for callers that map it
/// back to their source (a file and JSON path) without reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteErrorSite {
    /// The table's route list as a whole (`routes`): too many routes, too
    /// many service-tag routes.
    Routes,
    /// A field of one route.
    Route {
        /// Index of the route in [`RouteTableInput::routes`].
        index: usize,
        /// The field at fault.
        field: RouteField,
    },
}

impl RouteError {
    /// Which route and field of the route table the error is about; `None`
    /// for errors outside the route table (system-route inputs, the index).
    pub fn site(&self) -> Option<RouteErrorSite> {
        use RouteError as E;
        let (index, field) = match self {
            E::MalformedAddressPrefix { index, .. }
            | E::UnknownServiceTag { index, .. }
            | E::AddressPrefixHostBits { index, .. }
            | E::DuplicateAddressPrefix { index, .. } => (*index, RouteField::AddressPrefix),
            E::UnknownNextHopType { index, .. } | E::NextHopTypeNotAllowed { index, .. } => (*index, RouteField::NextHopType),
            E::MissingNextHopIp { index, .. }
            | E::NextHopIpNotAllowed { index, .. }
            | E::MalformedNextHopIp { index, .. }
            | E::NextHopIpFamilyMismatch { index, .. } => (*index, RouteField::NextHopIpAddress),
            E::DuplicateRouteName { index, .. } => (*index, RouteField::Name),
            E::TooManyRoutes { .. } | E::TooManyServiceTagRoutes { .. } => return Some(RouteErrorSite::Routes),
            E::SystemPrefixHostBits { .. } | E::Lpm(_) => return None,
        };
        Some(RouteErrorSite::Route { index, field })
    }
}

/// Why a route that contains the destination did or did not win
/// ([`EffectiveRouteTable::next_hop`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum CandidateOutcome {
    /// The longest active prefix containing the destination.
    Selected,
    /// Active, but a longer prefix containing the destination won.
    #[serde(rename_all = "camelCase")]
    LessSpecific {
        /// The winning prefix.
        winner_prefix: IpNet,
    },
    /// Not used for forwarding at all.
    #[serde(rename_all = "camelCase")]
    Invalid {
        /// Why.
        #[serde(flatten)]
        reason: InvalidReason,
    },
}

/// A route containing the destination, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// Index of the route in [`EffectiveRouteTable::routes`].
    pub index: usize,
    /// The route.
    pub route: EffectiveRoute,
    /// Why it won or lost.
    pub outcome: CandidateOutcome,
}

/// Next hop of a destination with its explanation (spec §4, §13.3 step 3-4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NextHop {
    /// Next hop type of the winning route.
    pub next_hop_type: NextHopType,
    /// Its (first) next hop IP, if any: Azure's `NextHopResult` has one
    /// (spec §4); [`Route::next_hop_ips`] has them all.
    #[serde(rename = "nextHopIpAddress")]
    pub next_hop_ip: Option<IpAddr>,
    /// Route table ID for a user route, else `"System Route"`.
    pub route_table_id: String,
    /// Index of the winning route in [`EffectiveRouteTable::routes`].
    pub route_index: usize,
    /// The winning route.
    pub route: EffectiveRoute,
    /// Every route whose prefix contains the destination, longest prefix
    /// first (listing order among equal prefixes), with its outcome.
    pub candidates: Vec<Candidate>,
}

impl NextHop {
    /// Azure's `NextHopResult` (three fields).
    pub fn result(&self) -> NextHopResult {
        NextHopResult {
            next_hop_type: self.next_hop_type,
            next_hop_ip_address: self.next_hop_ip.map(|ip| ip.to_string()),
            route_table_id: self.route_table_id.clone(),
        }
    }
}

/// A subnet's effective routes (spec §5.5) with a longest-prefix-match
/// index over the active ones.
#[derive(Debug, Clone)]
pub struct EffectiveRouteTable {
    routes: Vec<EffectiveRoute>,
    v4: Lpm4<u32>,
    v6: Lpm6<u32>,
}

impl PartialEq for EffectiveRouteTable {
    fn eq(&self, other: &Self) -> bool {
        self.routes == other.routes
    }
}

impl Serialize for EffectiveRouteTable {
    /// Azure's `EffectiveRouteListResult`: `{"value": [EffectiveRoute]}`,
    /// a service-tag user route and a service endpoint each listed once
    /// with all their prefixes (per state), where
    /// [`EffectiveRouteTable::routes`] has one per prefix.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct List<'a> {
            value: Vec<ListedRoutes<'a>>,
        }
        let groups = self.listing();
        List {
            value: groups.iter().map(|g| ListedRoutes(g)).collect(),
        }
        .serialize(serializer)
    }
}

impl EffectiveRouteTable {
    /// Every route, Active and Invalid, in listing order.
    pub fn routes(&self) -> &[EffectiveRoute] {
        &self.routes
    }

    /// The routes as the effective routes list shows them, in listing
    /// order: each alone, except the prefixes of one service-tag user route
    /// (spec §5.3) and those of one service endpoint (spec §5.2; the §5.4
    /// table lists it as one row), grouped by state where their first one
    /// is listed (Azure lists such a route once, spec §5.5 `addressPrefix`
    /// is an array).
    pub fn listing(&self) -> Vec<Vec<&EffectiveRoute>> {
        /// What ties the prefixes of one listed element together.
        #[derive(PartialEq, Eq, Hash)]
        enum Key<'a> {
            Tag(Option<&'a str>, Option<&'a str>),
            Endpoint(&'a str),
        }
        let mut groups: Vec<Vec<&EffectiveRoute>> = Vec::new();
        let mut grouped: HashMap<(Key<'_>, RouteState), usize> = HashMap::new();
        for r in &self.routes {
            let key = match (&r.route.source, &r.route.service_tag, &r.route.service_endpoint) {
                (RouteSource::User, Some(_), _) => Some(Key::Tag(r.route.route_table_id.as_deref(), r.route.name.as_deref())),
                (RouteSource::Default, _, Some(service)) => Some(Key::Endpoint(service)),
                _ => None,
            };
            if let Some(key) = key {
                let key = (key, r.state);
                if let Some(&g) = grouped.get(&key) {
                    groups[g].push(r);
                    continue;
                }
                grouped.insert(key, groups.len());
            }
            groups.push(vec![r]);
        }
        groups
    }

    /// The Active routes.
    pub fn active_routes(&self) -> impl Iterator<Item = &EffectiveRoute> {
        self.routes.iter().filter(|r| r.state == RouteState::Active)
    }

    /// Next hop for traffic to `dst` (spec §4, §5.4, §13.3): the active
    /// route with the longest prefix containing `dst`. `None` when no
    /// route contains it (e.g. an IPv6 destination in a VNet without IPv6
    /// space); Network Watcher would then answer `nextHopType` `None`.
    pub fn next_hop(&self, dst: IpAddr) -> Option<NextHop> {
        let index = self.lookup_index(dst)?;
        let route = self.routes.get(index)?.clone();
        let winner_prefix = route.route.address_prefix;
        let mut candidates: Vec<Candidate> = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.route.address_prefix.contains(&dst))
            .map(|(i, r)| Candidate {
                index: i,
                route: r.clone(),
                outcome: if i == index {
                    CandidateOutcome::Selected
                } else if let Some(reason) = &r.invalid_reason {
                    CandidateOutcome::Invalid { reason: reason.clone() }
                } else {
                    CandidateOutcome::LessSpecific { winner_prefix }
                },
            })
            .collect();
        candidates.sort_by_key(|c| (std::cmp::Reverse(c.route.route.address_prefix.prefix_len()), c.index));
        Some(NextHop {
            next_hop_type: route.route.next_hop_type,
            next_hop_ip: route.route.next_hop_ip(),
            route_table_id: route.route.route_table_id_or_system().to_owned(),
            route_index: index,
            route,
            candidates,
        })
    }

    /// Index of the winning route for `dst`, without the explanation.
    pub fn lookup_index(&self, dst: IpAddr) -> Option<usize> {
        let i = match dst {
            IpAddr::V4(a) => *self.v4.lookup(a)?.value,
            IpAddr::V6(a) => *self.v6.lookup(a)?.value,
        };
        Some(i as usize)
    }

    /// Azure's `NextHopResult` for `dst`.
    pub fn next_hop_result(&self, dst: IpAddr) -> Option<NextHopResult> {
        let route = &self.routes.get(self.lookup_index(dst)?)?.route;
        Some(NextHopResult {
            next_hop_type: route.next_hop_type,
            next_hop_ip_address: route.next_hop_ip().map(|ip| ip.to_string()),
            route_table_id: route.route_table_id_or_system().to_owned(),
        })
    }
}

fn system_route(prefix: IpNet, next_hop_type: NextHopType) -> Route {
    Route {
        name: None,
        source: RouteSource::Default,
        address_prefix: prefix,
        next_hop_type,
        next_hop_ips: Vec::new(),
        route_table_id: None,
        service_tag: None,
        service_endpoint: None,
        has_bgp_override: false,
    }
}

fn check_system_prefix(field: &'static str, p: &IpNet) -> Result<(), RouteError> {
    if p.trunc() != *p {
        return Err(RouteError::SystemPrefixHostBits {
            field,
            value: *p,
            network: p.trunc(),
        });
    }
    Ok(())
}

/// Service-tag rank among user routes with the same prefix (spec §5.3): an
/// explicit prefix wins over a tag; among tags, regional (`Storage.EastUS`),
/// then top-level (`Storage`), then AzureCloud regional
/// (`AzureCloud.canadacentral`), then `AzureCloud`. Higher wins.
fn tag_rank(tag: Option<&str>) -> u8 {
    let Some(tag) = tag else {
        return 4;
    };
    let lower = tag.to_ascii_lowercase();
    let azure_cloud = lower == "azurecloud" || lower.starts_with("azurecloud.");
    match (azure_cloud, tag.contains('.')) {
        (false, true) => 3,
        (false, false) => 2,
        (true, true) => 1,
        (true, false) => 0,
    }
}

/// A user route's `addressPrefix` after [`check_route_table`]: a CIDR with
/// host bits clear, or the name of a service tag (resolved, and checked to
/// be known, only when routes are built: that needs the tags file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDestination {
    /// A CIDR prefix.
    Prefix(IpNet),
    /// A service tag name, as written (trimmed).
    ServiceTag(String),
}

/// A user route that passed [`check_route_table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRoute {
    /// `addressPrefix`.
    pub destination: RouteDestination,
    /// `nextHopType`.
    pub next_hop_type: NextHopType,
    /// `nextHopIpAddress` (`VirtualAppliance` only, where it is required).
    pub next_hop_ip: Option<IpAddr>,
}

/// Parse `addressPrefix`: a CIDR (host bits must be clear) or something
/// shaped like a service tag name.
fn destination(table: &RouteTableInput, index: usize, r: &UserRoute) -> Result<RouteDestination, RouteError> {
    let raw = r.address_prefix.trim();
    match raw.parse::<IpNet>() {
        Ok(prefix) if prefix.trunc() != prefix => Err(RouteError::AddressPrefixHostBits {
            route_table: table.id.clone(),
            index,
            route: r.name.clone(),
            value: r.address_prefix.clone(),
            network: prefix.trunc(),
        }),
        Ok(prefix) => Ok(RouteDestination::Prefix(prefix)),
        Err(_) => {
            let looks_like_tag = raw.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !raw.contains(':') && !raw.contains('/');
            if !looks_like_tag {
                return Err(RouteError::MalformedAddressPrefix {
                    route_table: table.id.clone(),
                    index,
                    route: r.name.clone(),
                    value: r.address_prefix.clone(),
                });
            }
            Ok(RouteDestination::ServiceTag(raw.to_owned()))
        }
    }
}

/// Check one user route's next hop (spec §5.3): a known type a UDR may
/// use, `nextHopIpAddress` exactly when it is `VirtualAppliance`, an IP of
/// the prefix's version.
fn next_hop(table: &RouteTableInput, index: usize, r: &UserRoute, dest: &RouteDestination) -> Result<CheckedRoute, RouteError> {
    let rt = || table.id.clone();
    let name = || r.name.clone();
    let next_hop_type: NextHopType = r.next_hop_type.parse().map_err(|_| RouteError::UnknownNextHopType {
        route_table: rt(),
        index,
        route: name(),
        value: r.next_hop_type.clone(),
    })?;
    if !next_hop_type.allowed_in_user_route() {
        return Err(RouteError::NextHopTypeNotAllowed {
            route_table: rt(),
            index,
            route: name(),
            next_hop_type,
        });
    }
    let ip_raw = r.next_hop_ip.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let next_hop_ip = match (next_hop_type, ip_raw) {
        (NextHopType::VirtualAppliance, None) => {
            return Err(RouteError::MissingNextHopIp {
                route_table: rt(),
                index,
                route: name(),
            })
        }
        (NextHopType::VirtualAppliance, Some(s)) => Some(s.parse::<IpAddr>().map_err(|_| RouteError::MalformedNextHopIp {
            route_table: rt(),
            index,
            route: name(),
            value: s.to_owned(),
        })?),
        (other, Some(s)) => {
            return Err(RouteError::NextHopIpNotAllowed {
                route_table: rt(),
                index,
                route: name(),
                next_hop_type: other,
                value: s.to_owned(),
            })
        }
        (_, None) => None,
    };
    if let (RouteDestination::Prefix(prefix), Some(ip)) = (dest, next_hop_ip) {
        if !same_family(prefix, ip) {
            return Err(RouteError::NextHopIpFamilyMismatch {
                route_table: rt(),
                index,
                route: name(),
                prefix: *prefix,
                next_hop_ip: ip,
            });
        }
    }
    Ok(CheckedRoute {
        destination: dest.clone(),
        next_hop_type,
        next_hop_ip,
    })
}

fn same_family(p: &IpNet, ip: IpAddr) -> bool {
    ip.is_ipv4() == matches!(p, IpNet::V4(_))
}

/// Check a route table on its own (spec §5.3, [LIMITS]), before any subnet
/// uses it: at most [`MAX_ROUTES_PER_TABLE`] routes and
/// [`MAX_SERVICE_TAG_ROUTES_PER_TABLE`] service-tag routes; names unique
/// and `addressPrefix`es unique (without regard to case); each
/// `addressPrefix` a CIDR with host bits clear or a service tag name; each
/// `nextHopType` known and allowed in a UDR; `nextHopIpAddress` an IP of
/// the prefix's version, required for `VirtualAppliance` and refused for
/// the other types. [`effective_routes`] runs the same checks; whether a
/// tag is known is left to it (that needs the service tags). The result
/// has one [`CheckedRoute`] per route, in order.
pub fn check_route_table(table: &RouteTableInput) -> Result<Vec<CheckedRoute>, RouteError> {
    if table.routes.len() > MAX_ROUTES_PER_TABLE {
        return Err(RouteError::TooManyRoutes {
            route_table: table.id.clone(),
            count: table.routes.len(),
            max: MAX_ROUTES_PER_TABLE,
        });
    }
    // Duplicates: the same name, CIDR or tag (tags and names without case).
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut by_prefix: HashMap<String, usize> = HashMap::new();
    let mut tag_routes = 0usize;
    let mut checked = Vec::with_capacity(table.routes.len());
    for (index, r) in table.routes.iter().enumerate() {
        if let Some(&other) = names.get(&r.name.to_ascii_lowercase()) {
            return Err(RouteError::DuplicateRouteName {
                route_table: table.id.clone(),
                index,
                route: r.name.clone(),
                other_index: other,
                other_route: table.routes.get(other).map(|o| o.name.clone()).unwrap_or_default(),
            });
        }
        names.insert(r.name.to_ascii_lowercase(), index);
        let dest = destination(table, index, r)?;
        let key = match &dest {
            RouteDestination::Prefix(p) => p.to_string(),
            RouteDestination::ServiceTag(name) => {
                tag_routes += 1;
                name.to_ascii_lowercase()
            }
        };
        if let Some(&other) = by_prefix.get(&key) {
            return Err(RouteError::DuplicateAddressPrefix {
                route_table: table.id.clone(),
                index,
                route: r.name.clone(),
                other_route: table.routes.get(other).map(|o| o.name.clone()).unwrap_or_default(),
                prefix: r.address_prefix.trim().to_owned(),
            });
        }
        by_prefix.insert(key, index);
        checked.push(next_hop(table, index, r, &dest)?);
    }
    if tag_routes > MAX_SERVICE_TAG_ROUTES_PER_TABLE {
        return Err(RouteError::TooManyServiceTagRoutes {
            route_table: table.id.clone(),
            count: tag_routes,
            max: MAX_SERVICE_TAG_ROUTES_PER_TABLE,
        });
    }
    Ok(checked)
}

/// Turn a checked user route into [`Route`]s: one for a CIDR, one per
/// prefix for a service tag (an error when the tag is unknown; for a
/// `VirtualAppliance` next hop only the tag's prefixes of the appliance's
/// IP version).
fn user_routes(
    table: &RouteTableInput,
    index: usize,
    r: &UserRoute,
    checked: CheckedRoute,
    tags: &HashMap<String, (&String, &Vec<IpNet>)>,
) -> Result<Vec<Route>, RouteError> {
    let CheckedRoute {
        destination,
        next_hop_type,
        next_hop_ip,
    } = checked;
    let (prefixes, tag) = match destination {
        RouteDestination::Prefix(prefix) => (vec![prefix], None),
        RouteDestination::ServiceTag(raw) => {
            let Some((name, prefixes)) = tags.get(&raw.to_ascii_lowercase()) else {
                return Err(RouteError::UnknownServiceTag {
                    route_table: table.id.clone(),
                    index,
                    route: r.name.clone(),
                    tag: raw,
                });
            };
            let prefixes = prefixes
                .iter()
                .map(IpNet::trunc)
                .filter(|p| next_hop_ip.is_none_or(|ip| same_family(p, ip)))
                .collect();
            (prefixes, Some((*name).clone()))
        }
    };
    Ok(prefixes
        .into_iter()
        .map(|prefix| Route {
            name: Some(r.name.clone()),
            source: RouteSource::User,
            address_prefix: prefix,
            next_hop_type,
            next_hop_ips: next_hop_ip.into_iter().collect(),
            route_table_id: Some(table.id.clone()),
            service_tag: tag.clone(),
            service_endpoint: None,
            has_bgp_override: r.has_bgp_override,
        })
        .collect())
}

/// Rank among same-prefix system routes: VNet, then peering, then service
/// endpoint, then the rest (Internet / None). Higher wins.
fn system_rank(t: NextHopType) -> u8 {
    match t {
        NextHopType::VnetLocal => 3,
        NextHopType::VNetPeering => 2,
        NextHopType::VirtualNetworkServiceEndpoint => 1,
        _ => 0,
    }
}

/// Whether a system route is one of those that beat more specific BGP
/// routes (spec §5.4 exception).
fn beats_more_specific_bgp(r: &Route) -> bool {
    r.source == RouteSource::Default && system_rank(r.next_hop_type) > 0
}

/// Build a subnet's effective route table (spec §5.1-§5.4, §13.3 steps
/// 1-2). See the module docs for the listing order.
///
/// States:
/// * among routes with the same prefix, one is `Active`: highest source
///   precedence (user > virtual network gateway > default); among system
///   routes VnetLocal > VNetPeering > VirtualNetworkServiceEndpoint >
///   others; among user routes an explicit prefix > regional service tag >
///   top-level tag > AzureCloud regional > AzureCloud (spec §5.3); then
///   the earliest listed. The others are `Invalid`
///   ([`InvalidReason::OverriddenBySamePrefix`] or
///   [`InvalidReason::DuplicatePrefix`]).
/// * Exception (spec §5.4): "system routes for the VNet, VNet peering and
///   VNet service endpoints are preferred even when BGP routes are more
///   specific". So a gateway route whose prefix equals or lies inside a
///   VNet-range, peering or service-endpoint system route can never win for
///   any of its addresses: it is `Invalid`
///   ([`InvalidReason::ShadowedBySystemRoute`]) and left out of the lookup
///   index, whatever the state of that system route (a UDR overriding the
///   VNet route does not bring the BGP route back; Azure does not program
///   BGP routes into the VNet's own, peered or service ranges). Gateway
///   routes that *contain* such a range stay Active and lose to it by
///   ordinary longest-prefix match inside the range.
/// * A user route with `hasBgpOverride` (spec §5.3) overrides the gateway
///   routes equal to or inside its prefix in the same way
///   ([`InvalidReason::OverriddenByBgpOverride`]).
/// * A VirtualAppliance user route whose appliance address is reached only
///   through an ExpressRoute gateway route is `Invalid` (spec §5.3: the
///   address must be directly reachable;
///   [`InvalidReason::NextHopThroughExpressRoute`]).
/// * A VirtualNetworkGateway user route is `Invalid` when an ExpressRoute
///   gateway serves the VNet, alone or beside a VPN gateway (spec §5.3:
///   "only VPN-type gateways"; [`InvalidReason::GatewayNotVpn`]).
pub fn effective_routes(input: &SubnetRoutingInput) -> Result<EffectiveRouteTable, RouteError> {
    for p in &input.vnet_address_space {
        check_system_prefix("vnetAddressSpace", p)?;
    }
    for p in input.peerings.iter().flatten() {
        check_system_prefix("peerings", p)?;
    }
    for g in &input.gateway_routes {
        check_system_prefix("gatewayRoutes", &g.address_prefix)?;
    }
    for p in input.service_endpoint_routes.iter().flat_map(|e| &e.address_prefixes) {
        check_system_prefix("serviceEndpointRoutes", p)?;
    }

    // User routes first (validation), though they are listed last.
    let mut user = Vec::new();
    // The prefixes of user routes with `hasBgpOverride`.
    let mut bgp_overrides: Vec<IpNet> = Vec::new();
    let mut disable_bgp = false;
    if let Some(table) = &input.route_table {
        disable_bgp = table.disable_bgp_route_propagation;
        let checked = check_route_table(table)?;
        let tags: HashMap<String, (&String, &Vec<IpNet>)> =
            input.service_tags.iter().map(|(k, v)| (k.to_ascii_lowercase(), (k, v))).collect();
        for (index, (r, c)) in table.routes.iter().zip(checked).enumerate() {
            let expanded = user_routes(table, index, r, c, &tags)?;
            if r.has_bgp_override {
                bgp_overrides.extend(expanded.iter().map(|u| u.address_prefix));
            }
            user.extend(expanded);
        }
    }
    let mut routes: Vec<Route> = Vec::new();
    // 1. VNet ranges.
    for p in &input.vnet_address_space {
        routes.push(system_route(*p, NextHopType::VnetLocal));
    }
    // 2. Internet.
    let v4_default = IpNet::V4(Ipv4Net::default());
    routes.push(system_route(v4_default, NextHopType::Internet));
    // 3. Reserved None routes.
    let user_default_v4 = user.iter().any(|r| r.address_prefix == v4_default && r.service_tag.is_none());
    if !user_default_v4 {
        for s in RESERVED_NONE_PREFIXES {
            let Ok(reserved) = s.parse::<IpNet>() else {
                continue;
            };
            let covered = input.vnet_address_space.iter().any(|space| space.contains(&reserved));
            if !covered {
                routes.push(system_route(reserved, NextHopType::None));
            }
        }
    }
    // 4. IPv6 Internet.
    if input.vnet_address_space.iter().any(|p| matches!(p, IpNet::V6(_))) {
        routes.push(system_route(IpNet::V6(Ipv6Net::default()), NextHopType::Internet));
    }
    // 5. Peerings.
    for p in input.peerings.iter().flatten() {
        routes.push(system_route(*p, NextHopType::VNetPeering));
    }
    // 6. Service endpoints: a route per prefix, tied to its endpoint.
    for e in &input.service_endpoint_routes {
        for p in &e.address_prefixes {
            routes.push(Route {
                service_endpoint: Some(e.service.clone()),
                ..system_route(*p, NextHopType::VirtualNetworkServiceEndpoint)
            });
        }
    }
    // 7. Gateway routes.
    let gateway_start = routes.len();
    if !disable_bgp {
        for g in &input.gateway_routes {
            routes.push(Route {
                name: None,
                source: RouteSource::VirtualNetworkGateway,
                address_prefix: g.address_prefix,
                next_hop_type: NextHopType::VirtualNetworkGateway,
                next_hop_ips: g.next_hop_ips.clone(),
                route_table_id: None,
                service_tag: None,
                service_endpoint: None,
                has_bgp_override: false,
            });
        }
    }
    // 8. User routes.
    routes.extend(user);

    // States.
    let mut reasons: Vec<Option<InvalidReason>> = vec![None; routes.len()];
    // The exception: gateway routes inside VNet / peering / service-endpoint ranges.
    for (i, r) in routes.iter().enumerate() {
        if r.source != RouteSource::VirtualNetworkGateway {
            continue;
        }
        if let Some((j, s)) = routes
            .iter()
            .enumerate()
            .find(|(_, s)| beats_more_specific_bgp(s) && s.address_prefix.contains(&r.address_prefix))
        {
            reasons[i] = Some(InvalidReason::ShadowedBySystemRoute {
                system_route: j,
                system_prefix: s.address_prefix,
            });
            continue;
        }
        // A user route with `hasBgpOverride` overrides the gateway routes
        // equal to or inside its prefix, more specific or not (spec §5.3).
        if let Some(j) = routes.iter().position(|s| {
            s.source == RouteSource::User && bgp_overrides.contains(&s.address_prefix) && s.address_prefix.contains(&r.address_prefix)
        }) {
            reasons[i] = Some(InvalidReason::OverriddenByBgpOverride {
                user_route: j,
                user_prefix: routes[j].address_prefix,
            });
        }
    }
    // A virtual appliance must be reachable directly, not through an
    // ExpressRoute gateway (spec §5.3): the route the appliance's own
    // address takes (longest prefix among the valid non-user routes, then
    // precedence) must not be such a gateway route.
    let via_express_route =
        |i: usize| i >= gateway_start && !disable_bgp && input.gateway_routes.get(i - gateway_start).is_some_and(|g| g.express_route);
    for u in 0..routes.len() {
        let r = &routes[u];
        let (true, true, Some(ip)) = (
            r.source == RouteSource::User && reasons[u].is_none(),
            r.next_hop_type == NextHopType::VirtualAppliance,
            r.next_hop_ip(),
        ) else {
            continue;
        };
        let reaching = routes
            .iter()
            .enumerate()
            .filter(|(i, s)| s.source != RouteSource::User && reasons[*i].is_none() && s.address_prefix.contains(&ip))
            .max_by_key(|(i, s)| (s.address_prefix.prefix_len(), s.source.precedence(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i);
        if let Some(g) = reaching.filter(|&g| via_express_route(g)) {
            reasons[u] = Some(InvalidReason::NextHopThroughExpressRoute {
                gateway_route: g,
                next_hop_ip: ip,
            });
        }
    }
    // A user route to the gateway needs a VPN gateway: not ExpressRoute,
    // and not VPN and ExpressRoute coexisting (spec §5.3).
    if input.express_route_gateway {
        for (r, reason) in routes.iter().zip(reasons.iter_mut()) {
            if r.source == RouteSource::User && r.next_hop_type == NextHopType::VirtualNetworkGateway && reason.is_none() {
                *reason = Some(InvalidReason::GatewayNotVpn);
            }
        }
    }
    // Same-prefix groups.
    let mut winner_of: HashMap<IpNet, usize> = HashMap::new();
    let rank = |r: &Route| {
        let sub = match r.source {
            RouteSource::Default => system_rank(r.next_hop_type),
            RouteSource::User => tag_rank(r.service_tag.as_deref()),
            _ => 0,
        };
        (r.source.precedence(), sub)
    };
    for (i, r) in routes.iter().enumerate() {
        if reasons[i].is_some() {
            continue;
        }
        match winner_of.get(&r.address_prefix) {
            Some(&w) if rank(&routes[w]) >= rank(r) => {}
            _ => {
                winner_of.insert(r.address_prefix, i);
            }
        }
    }
    for (i, r) in routes.iter().enumerate() {
        if reasons[i].is_some() {
            continue;
        }
        let Some(&w) = winner_of.get(&r.address_prefix) else {
            continue;
        };
        if w != i {
            reasons[i] = Some(if rank(&routes[w]) > rank(r) {
                InvalidReason::OverriddenBySamePrefix {
                    winner: w,
                    winner_source: routes[w].source,
                }
            } else {
                InvalidReason::DuplicatePrefix { winner: w }
            });
        }
    }

    let mut b4 = Lpm4Builder::new();
    let mut b6 = Lpm6Builder::new();
    for (i, r) in routes.iter().enumerate() {
        if reasons[i].is_none() {
            match r.address_prefix {
                IpNet::V4(p) => b4.insert(p, i as u32),
                IpNet::V6(p) => b6.insert(p, i as u32),
            }
        }
    }
    let routes = routes
        .into_iter()
        .zip(reasons)
        .map(|(route, reason)| EffectiveRoute {
            route,
            state: if reason.is_some() {
                RouteState::Invalid
            } else {
                RouteState::Active
            },
            invalid_reason: reason,
            disable_bgp_route_propagation: disable_bgp,
        })
        .collect();
    Ok(EffectiveRouteTable {
        routes,
        v4: b4.build()?,
        v6: b6.build()?,
    })
}
