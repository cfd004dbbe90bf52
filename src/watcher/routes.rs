//! Effective routes and next hop (spec §4, §5): the loaded resources mapped
//! onto the routing crate's subnet input.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use netwatch_routing::ipnet::IpNet;
use netwatch_routing::{
    effective_routes as build_routes, EffectiveRouteTable, GatewayRoute, NextHop, RouteDestination, ServiceEndpointRoute,
    SubnetRoutingInput,
};

use super::context::{find_nic, select_nic};
use super::WatcherError;
use crate::azure::{Environment, NetworkInterface, ServiceEndpoint, Subnet, VirtualNetwork, VirtualNetworkGateway};
use netwatch_rules::IpPrefix;

fn net(p: &IpPrefix) -> Option<IpNet> {
    p.to_string().parse().ok()
}

/// Service tag of a subnet service endpoint (`serviceEndpoints[].service`).
fn endpoint_tag(service: &str) -> Option<&'static str> {
    Some(match service.to_ascii_lowercase().as_str() {
        "microsoft.storage" | "microsoft.storage.global" => "Storage",
        "microsoft.sql" => "Sql",
        "microsoft.azurecosmosdb" => "AzureCosmosDB",
        "microsoft.keyvault" => "AzureKeyVault",
        "microsoft.eventhub" => "EventHub",
        "microsoft.servicebus" => "ServiceBus",
        "microsoft.web" => "AppService",
        "microsoft.containerregistry" => "AzureContainerRegistry",
        "microsoft.azureactivedirectory" => "AzureActiveDirectory",
        "microsoft.cognitiveservices" => "CognitiveServicesManagement",
        _ => return None,
    })
}

/// The prefixes a service endpoint routes (spec §5.2: "Service's prefixes
/// (same as its service tag)"), in the order the tags file lists them:
/// those of the regional tag of each region in its `locations` (Azure
/// lists the VNet's region and often its pair), region by region, of the
/// whole tag for `*` or a `.Global` endpoint, and of the VNet's region when
/// `locations` is absent; each prefix once. A region
/// the tags file has no regional tag for counts as the whole tag, when the
/// file has that. `None` (with a warning) when the service or the tags file
/// leaves nothing to route.
fn endpoint_prefixes(env: &Environment, vnet: &VirtualNetwork, subnet: &Subnet, e: &ServiceEndpoint) -> Option<Vec<IpPrefix>> {
    let service = &e.service;
    let Some(tag) = endpoint_tag(service) else {
        tracing::warn!(subnet = %subnet.name, service = %service, "no service tag known for this service endpoint; its routes are left out");
        return None;
    };
    let Some(tags) = env.service_tags.as_ref() else {
        tracing::warn!(
            subnet = %subnet.name, service = %service,
            "service endpoint routes need the service tags file (--service-tags); they are left out"
        );
        return None;
    };
    let global = service.to_ascii_lowercase().ends_with(".global");
    let regions: Vec<&str> = if global || e.locations.iter().any(|l| l == "*") {
        Vec::new()
    } else if e.locations.is_empty() {
        vnet.location.iter().map(String::as_str).collect()
    } else {
        e.locations.iter().map(String::as_str).collect()
    };
    let whole = || {
        let list = tags.listed(tag);
        if list.is_none() {
            tracing::warn!(subnet = %subnet.name, service = %service, tag, "the service tags file has no such tag; the endpoint's routes are left out");
        }
        list
    };
    let lists: Vec<Option<Vec<IpPrefix>>> = if regions.is_empty() {
        vec![whole()]
    } else {
        regions
            .into_iter()
            .map(|region| {
                let names = tags.regional_tags(tag, region);
                if names.is_empty() {
                    tracing::warn!(subnet = %subnet.name, service = %service, region, "no regional service tag for this region; the whole tag is routed instead");
                    whole()
                } else {
                    Some(names.iter().filter_map(|n| tags.listed(n)).flatten().collect())
                }
            })
            .collect()
    };
    // In order, each prefix once (a tag may list one twice, two regions share one).
    let mut seen = std::collections::HashSet::new();
    lists
        .into_iter()
        .flatten()
        .reduce(|mut a, b| {
            a.extend(b);
            a
        })
        .map(|all| all.into_iter().filter(|p| seen.insert(*p)).collect())
}

/// The routes through one gateway: its connections' prefixes (local
/// network gateways, VNet-to-VNet) and the BGP routes its instances learned
/// (origin other than `Network`). One route per prefix, whose next hops
/// are the instances (`bgpPeeringAddress`, one address per instance of an
/// active-active gateway) that have it, in instance order: Azure lists one
/// route with every next hop (spec §5.5 `nextHopIpAddress` is an array),
/// not one per instance. Connection prefixes go through every instance.
fn gateway_routes(env: &Environment, g: &VirtualNetworkGateway, express_route: bool) -> Vec<GatewayRoute> {
    let instances = &g.bgp_peering_addresses;
    let mut routes: Vec<GatewayRoute> = Vec::new();
    let mut index: HashMap<IpNet, usize> = HashMap::new();
    let mut add = |prefix: IpNet, hops: &[IpAddr]| match index.get(&prefix) {
        Some(&i) => {
            let r = &mut routes[i];
            for h in hops {
                if !r.next_hop_ips.contains(h) {
                    r.next_hop_ips.push(*h);
                }
            }
            r.next_hop_ips.sort_by_key(|h| instances.iter().position(|a| a == h));
        }
        None => {
            index.insert(prefix, routes.len());
            routes.push(GatewayRoute {
                address_prefix: prefix,
                next_hop_ips: hops.to_vec(),
                express_route,
            });
        }
    };
    for p in env.prefixes_behind(g) {
        if let Some(n) = net(&p) {
            add(n, instances);
        }
    }
    for r in &env.learned_routes {
        let Some(instance) = r.local_address.filter(|a| instances.contains(a)) else {
            continue;
        };
        if !r.origin.eq_ignore_ascii_case("Network") {
            if let Some(n) = net(&r.network) {
                add(n, &[instance]);
            }
        }
    }
    routes
}

/// The routing input of a subnet.
pub fn subnet_routing_input(env: &Environment, vnet: &VirtualNetwork, subnet: &Subnet) -> Result<SubnetRoutingInput, WatcherError> {
    let mut input = SubnetRoutingInput {
        vnet_address_space: vnet.address_space.iter().filter_map(net).collect(),
        ..Default::default()
    };
    for (_, space) in env.peered_address_spaces(vnet)? {
        input.peerings.push(space.iter().filter_map(net).collect());
    }
    for g in env.gateways_serving(vnet) {
        let express_route = g.gateway_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("ExpressRoute"));
        input.express_route_gateway |= express_route;
        input.gateway_routes.extend(gateway_routes(env, g, express_route));
    }
    let tags = env.service_tags.as_ref();
    for e in &subnet.service_endpoints {
        let Some(list) = endpoint_prefixes(env, vnet, subnet, e) else {
            continue;
        };
        // Only the families the VNet has: an IPv4-only VNet gets no IPv6
        // endpoint routes (its subnets cannot send IPv6).
        let prefixes: Vec<IpNet> = list
            .iter()
            .filter_map(net)
            .filter(|n| input.vnet_address_space.iter().any(|v| v.addr().is_ipv4() == n.addr().is_ipv4()))
            .collect();
        // One route per endpoint, listed as one element (spec §5.4 table,
        // row 10; §5.5 `addressPrefix` is an array).
        if !prefixes.is_empty() {
            input.service_endpoint_routes.push(ServiceEndpointRoute::new(&e.service, prefixes));
        }
    }
    if let Some(rt) = super::context::route_table_of(env, subnet)? {
        let mut tag_map: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
        for r in &rt.routes {
            if let RouteDestination::ServiceTag(tag) = &r.destination {
                // The tag's prefixes as the tags file lists them, each once:
                // Azure routes the tag's own prefixes, so an explicit route
                // with one of them wins over the tag route (spec §5.3), which
                // a merged set (adjacent prefixes joined into a supernet
                // the tag never lists) would hide.
                if let Some(list) = tags.and_then(|t| t.listed(tag)) {
                    let mut seen = std::collections::HashSet::new();
                    tag_map.insert(tag.clone(), list.iter().filter(|p| seen.insert(**p)).filter_map(net).collect());
                }
            }
        }
        input.service_tags = tag_map;
        input.route_table = Some(rt.routing_input());
    }
    Ok(input)
}

/// The effective route table of a NIC's (primary IP configuration's) subnet.
pub fn nic_effective_routes(env: &Environment, nic: &NetworkInterface, ip: Option<IpAddr>) -> Result<EffectiveRouteTable, WatcherError> {
    let cfg = match ip {
        Some(ip) => nic.ip_configurations.iter().find(|c| c.private_ip_address == Some(ip)),
        None => nic.ip_configurations.iter().find(|c| c.primary).or(nic.ip_configurations.first()),
    }
    .ok_or_else(|| WatcherError::Invalid(format!("network interface {:?} has no matching IP configuration", nic.name)))?;
    let (vnet, subnet) = super::context::subnet_of(env, nic, cfg)?;
    let input = subnet_routing_input(env, vnet, subnet)?;
    build_routes(&input).map_err(|e| {
        // Name the file and JSON path of the route and field at fault (the
        // route table was checked when loaded; what is left is whether its
        // service tags are known).
        match super::context::route_table_of(env, subnet).ok().flatten() {
            Some(rt) if e.site().is_some() => WatcherError::Invalid(format!("{}: {e}", rt.location_of(&e))),
            _ => WatcherError::Invalid(e.to_string()),
        }
    })
}

/// `NetworkInterfaces_GetEffectiveRouteTable`.
pub fn effective_routes(env: &Environment, nic: &str) -> Result<EffectiveRouteTable, WatcherError> {
    let nic = find_nic(env, nic)?;
    nic_effective_routes(env, nic, None)
}

/// `NetworkWatchers_GetNextHop`: the VM (or NIC) sending from `source` to
/// `destination`. `None` when no route matches (e.g. IPv6 without IPv6 space).
pub fn next_hop(
    env: &Environment,
    vm: Option<&str>,
    nic: Option<&str>,
    source: IpAddr,
    destination: IpAddr,
) -> Result<Option<NextHop>, WatcherError> {
    if source.is_ipv4() != destination.is_ipv4() {
        return Err(WatcherError::Invalid(format!(
            "source {source} and destination {destination} are of different families"
        )));
    }
    let nic = select_nic(env, vm, nic, Some(source))?;
    if !nic.ip_configurations.iter().any(|c| c.private_ip_address == Some(source)) {
        let ips: Vec<String> = nic
            .ip_configurations
            .iter()
            .filter_map(|c| c.private_ip_address.map(|a| a.to_string()))
            .collect();
        return Err(WatcherError::Invalid(format!(
            "source {source} is not a private IP of network interface {:?} (its addresses: {})",
            nic.name,
            ips.join(", ")
        )));
    }
    let table = nic_effective_routes(env, nic, Some(source))?;
    Ok(table.next_hop(destination))
}
