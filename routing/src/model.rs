//! Azure route vocabulary (spec §4, §5): next hop types, route sources and
//! states, routes and effective routes, and the Network Watcher next-hop
//! result.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// `routeTableId` of a next-hop result whose winning route is not a user
/// route (spec §4, decision 8).
pub const SYSTEM_ROUTE: &str = "System Route";

/// Next hop type of a route (spec §5.1-§5.3; `RouteNextHopType` plus the
/// values real effective-route listings use, decision 6). Serialized exactly
/// as Azure writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NextHopType {
    /// Through the VNet's VPN gateway (UDR or gateway/BGP route).
    VirtualNetworkGateway,
    /// Within the virtual network.
    VnetLocal,
    /// To the internet (Azure backbone for Azure public IPs).
    Internet,
    /// To a network virtual appliance (`nextHopIpAddress` required).
    VirtualAppliance,
    /// Drop the traffic.
    None,
    /// To a peered virtual network (system route only).
    VNetPeering,
    /// To a service endpoint's service (system route only).
    VirtualNetworkServiceEndpoint,
}

impl NextHopType {
    /// Azure's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NextHopType::VirtualNetworkGateway => "VirtualNetworkGateway",
            NextHopType::VnetLocal => "VnetLocal",
            NextHopType::Internet => "Internet",
            NextHopType::VirtualAppliance => "VirtualAppliance",
            NextHopType::None => "None",
            NextHopType::VNetPeering => "VNetPeering",
            NextHopType::VirtualNetworkServiceEndpoint => "VirtualNetworkServiceEndpoint",
        }
    }

    /// Whether a user-defined route may use this next hop type (spec §5.3:
    /// "UDRs cannot use next hop VNet peering or
    /// VirtualNetworkServiceEndpoint").
    pub fn allowed_in_user_route(self) -> bool {
        !matches!(self, NextHopType::VNetPeering | NextHopType::VirtualNetworkServiceEndpoint)
    }
}

impl fmt::Display for NextHopType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A next hop type string that names no known type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown next hop type {0:?}")]
pub struct UnknownNextHopType(pub String);

impl FromStr for NextHopType {
    type Err = UnknownNextHopType;

    /// Case-insensitive; accepts the ARM names, the spellings of the
    /// spec §5.3 "Names across tools" table (`VNet peering`, classic
    /// `VPNGateway`, `VNETLocal`, `Null`) and `VnetPeering`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        Ok(match key.as_str() {
            "virtualnetworkgateway" | "vpngateway" => NextHopType::VirtualNetworkGateway,
            "vnetlocal" => NextHopType::VnetLocal,
            "internet" => NextHopType::Internet,
            "virtualappliance" => NextHopType::VirtualAppliance,
            "none" | "null" => NextHopType::None,
            "vnetpeering" => NextHopType::VNetPeering,
            "virtualnetworkserviceendpoint" => NextHopType::VirtualNetworkServiceEndpoint,
            _ => return Err(UnknownNextHopType(s.to_owned())),
        })
    }
}

/// Who created a route (spec §5.5 `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RouteSource {
    /// System route (VNet ranges, Internet, reserved `None`, peering,
    /// service endpoints).
    Default,
    /// User-defined route from the subnet's route table.
    User,
    /// Learned through the VNet gateway: local network gateway address
    /// spaces and BGP (decision 8).
    VirtualNetworkGateway,
    /// Unknown source.
    Unknown,
}

impl RouteSource {
    /// Precedence among routes with the same prefix (spec §5.4: 1. user,
    /// 2. BGP, 3. system). Higher wins.
    pub fn precedence(self) -> u8 {
        match self {
            RouteSource::User => 3,
            RouteSource::VirtualNetworkGateway => 2,
            RouteSource::Default => 1,
            RouteSource::Unknown => 0,
        }
    }

    /// Azure's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteSource::Default => "Default",
            RouteSource::User => "User",
            RouteSource::VirtualNetworkGateway => "VirtualNetworkGateway",
            RouteSource::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for RouteSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a route takes part in forwarding (spec §5.5 `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteState {
    /// Used for longest-prefix selection.
    Active,
    /// Listed, but overridden (spec §5.4).
    Invalid,
}

impl fmt::Display for RouteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteState::Active => "Active",
            RouteState::Invalid => "Invalid",
        })
    }
}

/// One route of a subnet's effective table (spec §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// UDR name; `None` for system and gateway routes.
    pub name: Option<String>,
    /// Who created the route.
    pub source: RouteSource,
    /// Destination prefix (IPv4 or IPv6, host bits clear).
    pub address_prefix: IpNet,
    /// Where matching traffic goes.
    pub next_hop_type: NextHopType,
    /// Virtual appliance IP, or for a gateway route the addresses of the
    /// gateway instances that have it, in instance order (both of an
    /// active-active gateway: spec §5.5 lists `nextHopIpAddress` as an
    /// array). Empty when there is none or it is not known.
    #[serde(rename = "nextHopIpAddress")]
    pub next_hop_ips: Vec<IpAddr>,
    /// Resource ID of the route table, for user routes.
    pub route_table_id: Option<String>,
    /// For a user route whose `addressPrefix` is a service tag: the tag
    /// (the route is expanded into one route per prefix of the tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tag: Option<String>,
    /// For a service endpoint's system route: the endpoint's service, e.g.
    /// `Microsoft.Storage` (the endpoint is expanded into one route per
    /// prefix of its service, listed as one element).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_endpoint: Option<String>,
    /// A user route with `hasBgpOverride` (spec §5.3).
    pub has_bgp_override: bool,
}

impl Route {
    /// The first next hop address: the one Network Watcher's next-hop
    /// result shows (a single string, spec §4).
    pub fn next_hop_ip(&self) -> Option<IpAddr> {
        self.next_hop_ips.first().copied()
    }

    /// `routeTableId` as a next-hop result shows it: the table ID for user
    /// routes, otherwise `"System Route"` (spec §4, decision 8).
    pub fn route_table_id_or_system(&self) -> &str {
        match (&self.source, &self.route_table_id) {
            (RouteSource::User, Some(id)) => id,
            _ => SYSTEM_ROUTE,
        }
    }
}

/// Why a route is `Invalid` (spec §5.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum InvalidReason {
    /// A route with the same prefix and higher precedence wins (user >
    /// virtual network gateway > default; within a source, see
    /// `effective_routes`).
    #[serde(rename_all = "camelCase")]
    OverriddenBySamePrefix {
        /// Index (in the effective table) of the winning route.
        winner: usize,
        /// Its source.
        winner_source: RouteSource,
    },
    /// A gateway (BGP) route equal to or inside a VNet, peering or
    /// service-endpoint system route: those system routes are preferred
    /// even over more specific BGP routes (spec §5.4 exception).
    #[serde(rename_all = "camelCase")]
    ShadowedBySystemRoute {
        /// Index of the system route.
        system_route: usize,
        /// Its prefix.
        system_prefix: IpNet,
    },
    /// A gateway (BGP) route equal to or inside a user route with
    /// `hasBgpOverride`, which overrides overlapping BGP routes regardless
    /// of longest-prefix match (spec §5.3).
    #[serde(rename_all = "camelCase")]
    OverriddenByBgpOverride {
        /// Index of the user route.
        user_route: usize,
        /// Its prefix.
        user_prefix: IpNet,
    },
    /// A virtual appliance route whose next hop address is reachable only
    /// through an ExpressRoute gateway: not a valid next hop (spec §5.3).
    #[serde(rename_all = "camelCase")]
    NextHopThroughExpressRoute {
        /// Index of the gateway route that reaches the appliance's address.
        gateway_route: usize,
        /// The appliance's address.
        next_hop_ip: IpAddr,
    },
    /// A user route to `VirtualNetworkGateway` while an ExpressRoute
    /// gateway serves the VNet (alone or beside a VPN gateway): only VPN
    /// gateways take user routes; ExpressRoute routes come from BGP
    /// (spec §5.3).
    GatewayNotVpn,
    /// Same prefix and same precedence as an earlier route, which wins.
    #[serde(rename_all = "camelCase")]
    DuplicatePrefix {
        /// Index of the earlier route.
        winner: usize,
    },
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::OverriddenBySamePrefix {
                winner,
                winner_source,
            } => write!(
                f,
                "overridden by route #{winner} ({winner_source}) with the same prefix and higher precedence"
            ),
            InvalidReason::ShadowedBySystemRoute {
                system_route,
                system_prefix,
            } => write!(
                f,
                "gateway route inside system route #{system_route} ({system_prefix}); VNet, peering and service-endpoint routes beat more specific BGP routes"
            ),
            InvalidReason::OverriddenByBgpOverride { user_route, user_prefix } => write!(
                f,
                "gateway route inside user route #{user_route} ({user_prefix}), which has hasBgpOverride"
            ),
            InvalidReason::NextHopThroughExpressRoute { gateway_route, next_hop_ip } => write!(
                f,
                "virtual appliance {next_hop_ip} is reachable only through an ExpressRoute gateway (route #{gateway_route}); the next hop must be directly reachable"
            ),
            InvalidReason::GatewayNotVpn => f.write_str(
                "next hop VirtualNetworkGateway needs a VPN gateway, and an ExpressRoute gateway serves this VNet (alone or beside a VPN gateway); ExpressRoute takes routes from BGP only",
            ),
            InvalidReason::DuplicatePrefix { winner } => {
                write!(f, "same prefix and precedence as earlier route #{winner}")
            }
        }
    }
}

/// A route with its state, as listed by the effective routes API
/// (spec §5.5). Serializes as Azure's `EffectiveRoute` element:
/// `name`, `disableBgpRoutePropagation`, `hasBgpOverride`, `source`,
/// `state`, `addressPrefix` (array), `destinationServiceTags`,
/// `nextHopIpAddress` (array), `nextHopType`, `tagMap` (the keys of the
/// spec §5.5 example element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveRoute {
    /// The route.
    pub route: Route,
    /// Active or Invalid.
    pub state: RouteState,
    /// Why it is Invalid (`None` when Active).
    pub invalid_reason: Option<InvalidReason>,
    /// The subnet's route table setting (false without a route table).
    pub disable_bgp_route_propagation: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AzureEffectiveRoute<'a> {
    name: Option<&'a str>,
    disable_bgp_route_propagation: bool,
    has_bgp_override: bool,
    source: RouteSource,
    state: RouteState,
    address_prefix: Vec<String>,
    destination_service_tags: Vec<&'a str>,
    next_hop_ip_address: Vec<String>,
    next_hop_type: NextHopType,
    tag_map: BTreeMap<&'a str, Vec<String>>,
}

/// Routes listed as one element of the effective routes list: one route,
/// or the expansions of one service-tag user route, or of one service
/// endpoint, that share a state (Azure lists such a route once, its
/// prefixes in `addressPrefix`). For a tag route `destinationServiceTags`
/// names the tag and `tagMap` maps it to them; a service endpoint's
/// element leaves both empty (the spec shows no tag on it).
/// Not empty; the first gives every field but the prefixes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListedRoutes<'a>(pub(crate) &'a [&'a EffectiveRoute]);

impl Serialize for ListedRoutes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(first) = self.0.first() else {
            return Err(serde::ser::Error::custom("an effective route element without routes"));
        };
        let r = &first.route;
        let prefixes: Vec<String> = self.0.iter().map(|e| e.route.address_prefix.to_string()).collect();
        let tag = r.service_tag.as_deref();
        AzureEffectiveRoute {
            name: r.name.as_deref(),
            disable_bgp_route_propagation: first.disable_bgp_route_propagation,
            has_bgp_override: r.has_bgp_override,
            source: r.source,
            state: first.state,
            destination_service_tags: tag.into_iter().collect(),
            tag_map: tag.map(|t| (t, prefixes.clone())).into_iter().collect(),
            address_prefix: prefixes,
            next_hop_ip_address: r.next_hop_ips.iter().map(|ip| ip.to_string()).collect(),
            next_hop_type: r.next_hop_type,
        }
        .serialize(serializer)
    }
}

impl Serialize for EffectiveRoute {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ListedRoutes(&[self]).serialize(serializer)
    }
}

/// Network Watcher `NextHopResult` (spec §4): exactly Azure's three
/// fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NextHopResult {
    /// Next hop type of the winning route.
    pub next_hop_type: NextHopType,
    /// Next hop IP (`null` unless the route has one).
    pub next_hop_ip_address: Option<String>,
    /// Route table ID for user routes, else `"System Route"`.
    pub route_table_id: String,
}
