//! Next hop and effective routes over the hub-and-spoke environment, in both
//! JSON shapes: every next hop type, every route source, equal-prefix
//! precedence, disabled BGP propagation, IPv6, and bad route data.

mod common;

use std::net::IpAddr;

use netwatch::watcher::routes::{effective_routes, next_hop};
use netwatch::Environment;
use netwatch_routing::{NextHopType, RouteSource, RouteState};

const RT_WEB: &str =
    "/subscriptions/6f8c3a2e-1b4d-4e7f-9a0b-2c5d8e1f3a40/resourceGroups/rg-spokes/providers/Microsoft.Network/routeTables/rt-web";
const RT_APP: &str =
    "/subscriptions/6f8c3a2e-1b4d-4e7f-9a0b-2c5d8e1f3a40/resourceGroups/rg-spokes/providers/Microsoft.Network/routeTables/rt-app";
const SYS: &str = "System Route";
const GW: Option<&str> = Some("10.0.255.30");
const FW: Option<&str> = Some("10.0.1.4");
const NOIP: Option<&str> = Option::None;

/// (what, vm, source, destination, next hop type, next hop IP, routeTableId)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    NextHopType,
    Option<&'static str>,
    &'static str,
);

use NextHopType::{Internet, VNetPeering, VirtualAppliance, VirtualNetworkGateway, VirtualNetworkServiceEndpoint, VnetLocal};

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // (what, vm, source, destination, type, next hop IP, routeTableId)
        ("own subnet: VnetLocal", "vm-web1", "10.1.1.4", "10.1.1.5", VnetLocal, NOIP, SYS),
        ("another subnet of the VNet", "vm-app1", "10.2.1.4", "10.2.2.4", VnetLocal, NOIP, SYS),
        ("peered hub", "vm-web1", "10.1.1.4", "10.0.1.9", VNetPeering, NOIP, SYS),
        ("hub to peered spoke", "vm-jump", "10.0.2.4", "10.1.1.4", VNetPeering, NOIP, SYS),
        ("user VnetLocal route beats the peering route (longer prefix)", "vm-web1", "10.1.1.4", "10.0.2.4", VnetLocal, NOIP, RT_WEB),
        ("spoke to spoke through the firewall (user route)", "vm-web1", "10.1.1.4", "10.2.2.4", VirtualAppliance, FW, RT_WEB),
        ("Internet default route", "vm-web1", "10.1.1.4", "8.8.8.8", Internet, NOIP, SYS),
        ("user Internet route", "vm-web1", "10.1.1.4", "13.107.21.200", Internet, NOIP, RT_WEB),
        ("service endpoint route (Storage.WestEurope)", "vm-web1", "10.1.1.4", "13.69.40.20", VirtualNetworkServiceEndpoint, NOIP, SYS),
        ("no service endpoint on the hub subnet", "vm-jump", "10.0.2.4", "13.69.40.20", Internet, NOIP, SYS),
        ("on-premises via the peer's gateway (useRemoteGateways)", "vm-web1", "10.1.1.4", "192.168.3.3", VirtualNetworkGateway, GW, SYS),
        ("equal prefix: user beats gateway", "vm-web1", "10.1.1.4", "172.16.10.5", VirtualAppliance, FW, RT_WEB),
        ("equal prefix: gateway beats default None", "vm-db1", "10.2.2.4", "192.168.1.1", VirtualNetworkGateway, GW, SYS),
        ("equal prefix: user beats default None", "vm-web1", "10.1.1.4", "100.64.0.1", VirtualAppliance, FW, RT_WEB),
        ("BGP-learned route", "vm-web1", "10.1.1.4", "10.70.1.1", VirtualNetworkGateway, GW, SYS),
        ("BGP route in the hub itself", "vm-jump", "10.0.2.4", "10.71.0.9", VirtualNetworkGateway, GW, SYS),
        ("BGP more specific than the VNet range loses to VnetLocal", "vm-web1", "10.1.1.4", "10.1.1.77", VnetLocal, NOIP, SYS),
        ("disabled BGP propagation: 0.0.0.0/0 user route instead", "vm-app1", "10.2.1.4", "192.168.1.1", VirtualAppliance, FW, RT_APP),
        ("disabled BGP propagation: learned prefix", "vm-app1", "10.2.1.4", "10.70.1.1", VirtualAppliance, FW, RT_APP),
        ("0.0.0.0/0 user route removes the reserved None routes", "vm-app1", "10.2.1.4", "172.20.0.1", VirtualAppliance, FW, RT_APP),
        ("peering still wins under a 0.0.0.0/0 user route", "vm-app1", "10.2.1.4", "10.0.2.4", VNetPeering, NOIP, SYS),
        ("a NotConnected site is unreachable: reserved None route", "vm-jump", "10.0.2.4", "10.50.1.1", NextHopType::None, NOIP, SYS),
        ("a non-Connected peering: reserved None route", "vm-jump", "10.0.2.4", "10.3.1.4", NextHopType::None, NOIP, SYS),
        ("reserved 172.16.0.0/12 None", "vm-legacy", "10.3.1.4", "172.31.0.100", NextHopType::None, NOIP, SYS),
        ("reserved 100.64.0.0/10 None", "vm-jump", "10.0.2.4", "100.64.1.1", NextHopType::None, NOIP, SYS),
        ("no route table, no gateway: Internet", "vm-legacy", "10.3.1.4", "52.178.4.10", Internet, NOIP, SYS),
        ("user None route", "vm-web1", "10.1.1.4", "203.0.113.9", NextHopType::None, NOIP, RT_WEB),
        ("user VirtualNetworkGateway route", "vm-web1", "10.1.1.4", "10.60.0.1", VirtualNetworkGateway, NOIP, RT_WEB),
        ("IPv6 own VNet", "vm-web1", "fd00:1:0:1::4", "fd00:1:0:2::9", VnetLocal, NOIP, SYS),
        ("IPv6 Internet", "vm-web1", "fd00:1:0:1::4", "2001:4860::1", Internet, NOIP, SYS),
        ("IPv6 user None route", "vm-web1", "fd00:1:0:1::4", "2001:db8:99::1", NextHopType::None, NOIP, RT_WEB),
    ]
}

fn check(env: &Environment, shape: &str) {
    let cases = cases();
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (what, vm, src, dst, ty, ip, rt) in cases {
        let src: IpAddr = src.parse().unwrap();
        let dst: IpAddr = dst.parse().unwrap();
        match next_hop(env, Some(vm), Option::None, src, dst) {
            Ok(Some(h)) => {
                let r = h.result();
                if r.next_hop_type != ty || r.next_hop_ip_address.as_deref() != ip || r.route_table_id != rt {
                    failures.push(format!("[{shape}] {what}: got {r:?}"));
                }
            }
            Ok(Option::None) => failures.push(format!("[{shape}] {what}: no route")),
            Err(e) => failures.push(format!("[{shape}] {what}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn next_hop_rest_shape() {
    check(&common::rest_env(), "REST");
}

#[test]
fn next_hop_az_cli_shape() {
    check(&common::cli_env(), "az CLI");
}

#[test]
fn effective_routes_list_losers_as_invalid() {
    let env = common::rest_env();
    let t = effective_routes(&env, "nic-web1").unwrap();
    let find = |prefix: &str, source: RouteSource| {
        t.routes()
            .iter()
            .find(|r| r.route.address_prefix.to_string() == prefix && r.route.source == source)
            .unwrap_or_else(|| panic!("no {source:?} route {prefix}"))
    };
    // A user route on the same prefix as a gateway route: the gateway route is Invalid.
    assert_eq!(find("172.16.10.0/24", RouteSource::User).state, RouteState::Active);
    assert_eq!(
        find("172.16.10.0/24", RouteSource::VirtualNetworkGateway).state,
        RouteState::Invalid
    );
    // A gateway route on the same prefix as a reserved None route.
    assert_eq!(find("192.168.0.0/16", RouteSource::Default).state, RouteState::Invalid);
    assert_eq!(find("192.168.0.0/16", RouteSource::VirtualNetworkGateway).state, RouteState::Active);
    // A user route on a reserved prefix.
    assert_eq!(find("100.64.0.0/10", RouteSource::Default).state, RouteState::Invalid);
    // A BGP route inside a peered range is not used.
    assert_eq!(find("10.1.1.0/24", RouteSource::VirtualNetworkGateway).state, RouteState::Invalid);
    let v = serde_json::to_value(&t).unwrap();
    let first = &v["value"][0];
    for k in [
        "name",
        "disableBgpRoutePropagation",
        "hasBgpOverride",
        "source",
        "state",
        "addressPrefix",
        "nextHopIpAddress",
        "nextHopType",
    ] {
        assert!(first.get(k).is_some(), "missing {k}: {first}");
    }
    // rt-app disables BGP propagation: no gateway route at all.
    let app = effective_routes(&env, "nic-app1").unwrap();
    assert!(app.routes().iter().all(|r| r.route.source != RouteSource::VirtualNetworkGateway));
    assert!(app.routes().iter().all(|r| r.disable_bgp_route_propagation));
}

use common::netwatch;

#[test]
fn next_hop_cli_prints_azure_shape() {
    let o = netwatch(&[
        "next-hop",
        "--resources",
        "demo/hub-spoke",
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--vm",
        "vm-web1",
        "--source",
        "10.1.1.4",
        "--destination",
        "8.8.8.8",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"nextHopType": "Internet", "nextHopIpAddress": null, "routeTableId": "System Route"})
    );
    let o = netwatch(&[
        "next-hop",
        "--resources",
        "tests/data/hub-spoke-cli",
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--vm",
        "vm-web1",
        "--source",
        "10.1.1.4",
        "--destination",
        "172.16.10.5",
        "--explain",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = v["candidates"].as_array().unwrap();
    assert!(c.len() >= 3, "{v}");
    let selected: Vec<_> = c.iter().filter(|x| x["outcome"]["outcome"] == "selected").collect();
    assert_eq!(selected.len(), 1, "{v}");
    assert_eq!(selected[0]["route"]["source"], "User");
    assert!(
        c.iter()
            .any(|x| x["outcome"]["outcome"] == "invalid" && x["route"]["source"] == "VirtualNetworkGateway"),
        "{v}"
    );
}

#[test]
fn bad_route_data_names_table_route_and_field() {
    for (file, route, needle) in [
        (
            "rt-web-appliance-without-ip.json",
            "properties.routes[1]",
            "nextHopIpAddress is required",
        ),
        ("rt-web-bad-prefix.json", "properties.routes[2]", "\"100.64.0.0/33\""),
        // Caught by the loader, before the routing checks: named the same.
        (
            "rt-web-prefix-number.json",
            "properties.routes[1].properties.addressPrefix",
            "route onprem-dc-via-fw: expected a string, found a number",
        ),
        (
            "rt-web-no-next-hop-type.json",
            "properties.routes[2].properties.nextHopType",
            "route cgnat-via-fw: missing required field",
        ),
        (
            "rt-web-ip-on-none.json",
            "properties.routes[3]",
            "nextHopIpAddress \"10.0.1.4\" is allowed only when nextHopType is VirtualAppliance",
        ),
    ] {
        let path = format!("tests/data/malformed/{file}");
        let err = next_hop_error(&path, "8.8.8.8");
        assert!(
            err.starts_with("error: ")
                && err.contains(&format!("{path}: {route}"))
                && err.contains("routeTables/rt-web")
                && err.contains(needle),
            "{err}"
        );
    }
}

/// Route-table errors say where they are from the route's index the
/// routing crate reports (`RouteError::site`), not from a route name found
/// in the message: a duplicate name is blamed on the later route (the
/// first of the two has the same name, so a name search found it), and a
/// table-wide limit on the route list, with the file (it names no route,
/// so a name search found nothing).
#[test]
fn route_table_errors_name_the_route_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let many = common::rt_web_with_routes(dir.path(), 401);
    let many = many.to_string_lossy().into_owned();
    for (path, at, needle) in [
        (
            "tests/data/malformed/rt-web-dup-route-name.json",
            "properties.routes[8].name",
            "route to-app-via-fw: name is already used by routes[0] (\"to-app-via-fw\")",
        ),
        (many.as_str(), "properties.routes", "401 routes, more than the limit of 400"),
    ] {
        let err = next_hop_error(path, "10.2.1.4");
        assert!(
            err.starts_with("error: ") && err.contains(&format!("{path}: {at}: route table ")) && err.contains(needle),
            "{err}"
        );
    }
}

/// The demo environment with the resources under `extra` (files or
/// directories of tests/data) loaded after it: later resources with the
/// same id replace earlier ones.
fn demo_with(extra: &[&str]) -> Environment {
    let mut paths = vec![common::root().join("demo/hub-spoke")];
    paths.extend(extra.iter().map(|e| common::root().join(e)));
    Environment::load(&paths).unwrap_or_else(|e| panic!("load the demo with {extra:?}: {e}"))
}

/// The next hop from a VM's address: (type, IP, routeTableId).
fn hop_of(env: &Environment, vm: &str, src: &str, dst: &str) -> (NextHopType, Option<String>, String) {
    let h = next_hop(env, Some(vm), Option::None, src.parse().unwrap(), dst.parse().unwrap())
        .unwrap_or_else(|e| panic!("{vm} -> {dst}: {e}"))
        .unwrap_or_else(|| panic!("{vm} -> {dst}: no route"));
    let r = h.result();
    (r.next_hop_type, r.next_hop_ip_address, r.route_table_id)
}

/// An active-active gateway (two BGP addresses): routes learned by either
/// instance reach the spokes, with that instance as the next hop.
#[test]
fn active_active_gateway_routes_of_both_instances() {
    let env = demo_with(&["tests/data/active-active"]);
    for (vm, src, dst, ip) in [
        ("vm-jump", "10.0.2.4", "10.80.1.1", "10.0.255.31"),
        ("vm-web1", "10.1.1.4", "10.80.1.1", "10.0.255.31"),
        ("vm-web1", "10.1.1.4", "10.70.1.1", "10.0.255.30"),
    ] {
        let (ty, got_ip, _) = hop_of(&env, vm, src, dst);
        assert_eq!((ty, got_ip.as_deref()), (VirtualNetworkGateway, Some(ip)), "{vm} -> {dst}");
    }
}

/// A `Microsoft.Storage.Global` service endpoint routes the global
/// `Storage` tag's prefixes, not the region's.
#[test]
fn global_service_endpoint_routes_the_global_tag() {
    let mut env = common::rest_env();
    let tags = env.service_tags.clone().expect("service tags loaded");
    let vnet = env.virtual_networks.iter_mut().find(|v| v.name == "vnet-web").expect("vnet-web");
    let i = vnet
        .subnets
        .iter()
        .position(|s| !s.service_endpoints.is_empty())
        .expect("a subnet with endpoints");
    vnet.subnets[i].service_endpoints = vec!["Microsoft.Storage.Global".into()];
    let (vnet, subnet) = (vnet.clone(), vnet.subnets[i].clone());
    let input = netwatch::watcher::routes::subnet_routing_input(&env, &vnet, &subnet).expect("routing input");
    let want: Vec<String> = tags
        .listed("Storage")
        .expect("global Storage tag")
        .iter()
        .map(|p| p.to_string())
        .collect();
    // One endpoint, one route of all its prefixes.
    let [endpoint] = input.service_endpoint_routes.as_slice() else {
        panic!("one endpoint route expected: {:?}", input.service_endpoint_routes);
    };
    assert_eq!(endpoint.service, "Microsoft.Storage.Global");
    let got: Vec<String> = endpoint.address_prefixes.iter().map(|p| p.to_string()).collect();
    assert!(want.len() > 100, "{} global Storage prefixes", want.len());
    assert_eq!(got, want);
}

/// A user route with `hasBgpOverride` wins over the BGP routes inside its
/// prefix, though they are more specific (spec §5.3); addresses outside
/// it still follow longest-prefix match.
#[test]
fn bgp_override_beats_more_specific_bgp_routes() {
    // rt-web plus 10.64.0.0/10 -> the firewall, hasBgpOverride: the learned
    // 10.70.0.0/16 and 10.71.0.0/16 lie inside it.
    let env = demo_with(&["tests/data/bgp-override"]);
    let fw = (VirtualAppliance, FW.map(String::from), RT_WEB.to_string());
    assert_eq!(hop_of(&env, "vm-web1", "10.1.1.4", "10.70.1.1"), fw);
    assert_eq!(hop_of(&env, "vm-web1", "10.1.1.4", "10.71.0.9"), fw);
    // Outside 10.64.0.0/10: on-premises through the gateway as before.
    assert_eq!(
        hop_of(&env, "vm-web1", "10.1.1.4", "192.168.3.3"),
        (VirtualNetworkGateway, GW.map(String::from), SYS.to_string())
    );
    // The overridden BGP routes are listed Invalid.
    let table = effective_routes(&env, "nic-web1").expect("effective routes");
    let learned = table
        .routes()
        .iter()
        .find(|r| r.route.address_prefix.to_string() == "10.70.0.0/16")
        .expect("the learned route is listed");
    assert_eq!(learned.state, RouteState::Invalid);
    assert!(
        learned
            .invalid_reason
            .as_ref()
            .is_some_and(|r| r.to_string().contains("hasBgpOverride")),
        "{:?}",
        learned.invalid_reason
    );
    // The UDR shows the flag as Azure lists it.
    let v = serde_json::to_value(&table).expect("serialize");
    let udr = v["value"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "all-ten-via-fw"))
        .expect("the UDR is listed");
    assert_eq!(udr["hasBgpOverride"], true, "{udr}");
    // Without the flag, longest-prefix match: the BGP route wins.
    assert_eq!(hop_of(&demo_with(&[]), "vm-web1", "10.1.1.4", "10.70.1.1").0, VirtualNetworkGateway);
}

/// `useRemoteGateways` takes the peer's consent: when the hub's peerings
/// do not allow gateway transit, the spokes get no route through its
/// gateway (on-premises falls back to the reserved None route).
#[test]
fn remote_gateway_needs_allow_gateway_transit() {
    let env = demo_with(&["tests/data/no-gateway-transit"]);
    assert_eq!(hop_of(&env, "vm-web1", "10.1.1.4", "192.168.3.3").0, NextHopType::None);
    // The hub itself still uses its own gateway.
    assert_eq!(hop_of(&env, "vm-jump", "10.0.2.4", "192.168.3.3").0, VirtualNetworkGateway);
}

/// A virtual appliance whose address is reachable only through an
/// ExpressRoute gateway is not a valid next hop (spec §5.3): the UDR is
/// Invalid and the address range falls back to the system routes.
#[test]
fn appliance_behind_express_route_invalidates_the_udr() {
    // The hub gateway as ExpressRoute, and rt-web's spoke-to-spoke route
    // pointing at an on-premises address behind it.
    let env = demo_with(&["tests/data/express-route"]);
    assert_eq!(
        hop_of(&env, "vm-web1", "10.1.1.4", "10.2.2.4"),
        (NextHopType::None, Option::None, SYS.to_string())
    );
    let t = effective_routes(&env, "nic-web1").expect("effective routes");
    let udr = t
        .routes()
        .iter()
        .find(|r| r.route.name.as_deref() == Some("to-app-via-fw"))
        .expect("the UDR is listed");
    assert_eq!(udr.state, RouteState::Invalid);
    assert!(
        udr.invalid_reason.as_ref().is_some_and(|r| r.to_string().contains("ExpressRoute")),
        "{:?}",
        udr.invalid_reason
    );
    // The same appliance address behind a VPN gateway (the demo's) is fine.
    let vpn = demo_with(&["tests/data/express-route/rt-web.json"]);
    assert_eq!(hop_of(&vpn, "vm-web1", "10.1.1.4", "10.2.2.4").0, VirtualAppliance);
}

/// A user route to `VirtualNetworkGateway` needs a VPN gateway (spec §5.3:
/// "only VPN-type gateways; not ExpressRoute, and not VPN+ER
/// coexistence"): with the hub's gateway as ExpressRoute, rt-web's
/// partner-via-gateway route is Invalid and its range falls back to the
/// system routes; behind the demo's VPN gateway it is the next hop.
#[test]
fn gateway_udr_needs_a_vpn_gateway() {
    let er = demo_with(&["tests/data/express-route"]);
    assert_eq!(
        hop_of(&er, "vm-web1", "10.1.1.4", "10.60.1.1"),
        (NextHopType::None, Option::None, SYS.to_string())
    );
    let t = effective_routes(&er, "nic-web1").expect("effective routes");
    let udr = t
        .routes()
        .iter()
        .find(|r| r.route.name.as_deref() == Some("partner-via-gateway"))
        .expect("the UDR is listed");
    assert_eq!(udr.state, RouteState::Invalid);
    assert!(
        udr.invalid_reason
            .as_ref()
            .is_some_and(|r| r.to_string().contains("needs a VPN gateway")),
        "{:?}",
        udr.invalid_reason
    );
    let vpn = demo_with(&[]);
    assert_eq!(
        hop_of(&vpn, "vm-web1", "10.1.1.4", "10.60.1.1"),
        (VirtualNetworkGateway, Option::None, RT_WEB.to_string())
    );
}

/// Service-endpoint routes come in the families the VNet has: an
/// IPv4-only VNet gets the service's IPv4 prefixes only, a dual-stack
/// VNet both.
#[test]
fn service_endpoint_routes_follow_the_vnets_families() {
    let endpoint_prefixes = |extra: &[&str], nic: &str| -> Vec<String> {
        let mut env = demo_with(extra);
        env.load_service_tags(&common::root().join("demo/ServiceTags_Demo.json"))
            .expect("tags");
        let t = effective_routes(&env, nic).expect("effective routes");
        t.routes()
            .iter()
            .filter(|r| r.route.next_hop_type == VirtualNetworkServiceEndpoint)
            .map(|r| r.route.address_prefix.to_string())
            .collect()
    };
    // snet-app (IPv4 only) with a Storage endpoint.
    assert_eq!(
        endpoint_prefixes(&["tests/data/ipv4-endpoint"], "nic-app1"),
        ["13.69.40.16/28", "13.95.96.176/28", "13.95.240.16/28"]
    );
    // snet-web (dual stack): the IPv6 prefix too.
    let web = endpoint_prefixes(&[], "nic-web1");
    assert_eq!(web.len(), 4, "{web:?}");
    assert!(web.contains(&"2603:1020:207::/48".to_string()), "{web:?}");
}

/// A service endpoint routes the regions its `locations` lists (Azure adds
/// the VNet region's pair), each through its regional tag, matched without
/// case; `*` routes the whole service tag (spec §5.2). snet-app lists
/// westeurope and northeurope: an address of Storage.NorthEurope takes the
/// endpoint, beating rt-app's 0.0.0.0/0 to the firewall (a longer prefix).
#[test]
fn service_endpoint_routes_every_listed_location() {
    let mut env = demo_with(&["tests/data/ipv4-endpoint"]);
    env.load_service_tags(&common::real_service_tags()).expect("tags");
    let tags = env.service_tags.clone().expect("service tags loaded");
    let north = "13.70.208.17";
    assert!(tags.get("Storage.NorthEurope").expect("tag").contains(north.parse().unwrap()));
    assert!(!tags.get("Storage.WestEurope").expect("tag").contains(north.parse().unwrap()));
    let endpoint = (VirtualNetworkServiceEndpoint, Option::None, SYS.to_string());
    assert_eq!(hop_of(&env, "vm-app1", "10.2.1.4", north), endpoint);
    assert_eq!(hop_of(&env, "vm-app1", "10.2.1.4", "13.69.40.20"), endpoint);
    // Elsewhere (Storage.EastUS) the 0.0.0.0/0 user route still wins.
    let east = tags.get("Storage.EastUS").expect("tag").to_prefixes()[0].to_string();
    let east = east.split('/').next().expect("address");
    assert_eq!(
        hop_of(&env, "vm-app1", "10.2.1.4", east),
        (VirtualAppliance, FW.map(String::from), RT_APP.to_string())
    );
}

/// The routes of an endpoint are exactly its regions' regional tags' (here
/// IPv4) prefixes, the region names matched whatever their case; `*` gives
/// the whole tag, no `locations` the VNet's region (spec §5.2).
#[test]
fn service_endpoint_locations_choose_the_tags() {
    let mut env = demo_with(&["tests/data/ipv4-endpoint"]);
    env.load_service_tags(&common::real_service_tags()).expect("tags");
    let tags = env.service_tags.clone().expect("service tags loaded");
    let prefixes = |env: &Environment, locations: &[&str]| -> Vec<String> {
        let mut vnet = env
            .virtual_networks
            .iter()
            .find(|v| v.name == "vnet-app")
            .expect("vnet-app")
            .clone();
        let subnet = vnet.subnets.iter_mut().find(|s| s.name == "snet-app").expect("snet-app");
        subnet.service_endpoints[0].locations = locations.iter().map(|l| l.to_string()).collect();
        let subnet = subnet.clone();
        let input = netwatch::watcher::routes::subnet_routing_input(env, &vnet, &subnet).expect("routing input");
        input
            .service_endpoint_routes
            .iter()
            .flat_map(|e| &e.address_prefixes)
            .map(|p| p.to_string())
            .collect()
    };
    // The tags' IPv4 prefixes as the file lists them, tag after tag.
    let v4 = |names: &[&str]| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in names {
            for p in tags.listed(n).expect("tag") {
                let p = p.to_string();
                if !p.contains(':') && !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    };
    assert_eq!(
        prefixes(&env, &["WestEurope", "NORTHEUROPE"]),
        v4(&["Storage.WestEurope", "Storage.NorthEurope"])
    );
    assert_eq!(prefixes(&env, &["northeurope"]), v4(&["Storage.NorthEurope"]));
    // `*`: the whole Storage tag. No `locations`: the VNet's region.
    let all = prefixes(&env, &["*"]);
    assert!(all.len() > 100, "{} prefixes", all.len());
    assert_eq!(all, v4(&["Storage"]));
    assert_eq!(prefixes(&env, &[]), v4(&["Storage.WestEurope"]));
}

/// An active-active gateway whose two instances both learned 10.70.0.0/16
/// (instance 2's dump loaded first): one Active route listing both
/// instances in instance order, not a second Invalid copy; the local
/// network gateway's prefixes go through both instances too (spec §5.5:
/// `nextHopIpAddress` is an array). Next hop shows the first address.
#[test]
fn active_active_gateway_lists_every_instance_once() {
    let env = demo_with(&["tests/data/active-active", "tests/data/active-active-shared"]);
    let table = effective_routes(&env, "nic-web1").expect("effective routes");
    let json = serde_json::to_value(&table).expect("json");
    // (state, nextHopIpAddress) of the gateway routes to `prefix`, as listed.
    let gateway = |prefix: &str| -> Vec<(String, serde_json::Value)> {
        json["value"]
            .as_array()
            .expect("value")
            .iter()
            .filter(|r| r["source"] == "VirtualNetworkGateway" && r["addressPrefix"] == serde_json::json!([prefix]))
            .map(|r| (r["state"].as_str().unwrap_or_default().to_string(), r["nextHopIpAddress"].clone()))
            .collect()
    };
    let active = |ips: &[&str]| vec![("Active".to_string(), serde_json::json!(ips))];
    assert_eq!(gateway("10.70.0.0/16"), active(&["10.0.255.30", "10.0.255.31"]));
    assert_eq!(gateway("192.168.0.0/16"), active(&["10.0.255.30", "10.0.255.31"]));
    assert_eq!(gateway("10.80.0.0/16"), active(&["10.0.255.31"]));
    // Instance 1's new dump no longer has 10.71.0.0/16.
    assert_eq!(gateway("10.71.0.0/16"), []);
    assert_eq!(
        hop_of(&env, "vm-web1", "10.1.1.4", "10.70.1.1"),
        (VirtualNetworkGateway, GW.map(String::from), SYS.to_string())
    );
}

/// A user route whose addressPrefix is a service tag is listed once with
/// all the tag's prefixes in `addressPrefix`, the tag named in
/// `destinationServiceTags` and `tagMap` (spec §5.5 element); the prefixes
/// an explicit user route wins are listed apart, Invalid. Next hop still
/// goes prefix by prefix.
#[test]
fn service_tag_user_routes_are_listed_once() {
    let mut env = demo_with(&["tests/data/tag-routes"]);
    env.load_service_tags(&common::root().join("demo/ServiceTags_Demo.json"))
        .expect("tags");
    let table = effective_routes(&env, "nic-app1").expect("effective routes");
    let json = serde_json::to_value(&table).expect("json");
    let named = |name: &str| -> Vec<serde_json::Value> {
        json["value"]
            .as_array()
            .expect("value")
            .iter()
            .filter(|r| r["name"] == name)
            .map(|r| {
                serde_json::json!([
                    r["state"],
                    r["addressPrefix"],
                    r["destinationServiceTags"],
                    r["tagMap"],
                    r["nextHopType"]
                ])
            })
            .collect()
    };
    let storage = ["13.69.40.16/28", "13.95.96.176/28", "13.95.240.16/28", "2603:1020:207::/48"];
    assert_eq!(
        named("storage-direct"),
        [serde_json::json!(["Active", storage, ["Storage.WestEurope"], {"Storage.WestEurope": storage}, "Internet"])]
    );
    // sql-one-direct takes 13.69.104.0/26 from the Sql route.
    let rest = ["13.69.104.192/26", "2603:1020:206::320/123"];
    assert_eq!(
        named("sql-drop"),
        [
            serde_json::json!(["Invalid", ["13.69.104.0/26"], ["Sql"], {"Sql": ["13.69.104.0/26"]}, "None"]),
            serde_json::json!(["Active", rest, ["Sql"], {"Sql": rest}, "None"]),
        ]
    );
    assert_eq!(
        named("sql-one-direct"),
        [serde_json::json!(["Active", ["13.69.104.0/26"], [], {}, "Internet"])]
    );
    assert_eq!(
        hop_of(&env, "vm-app1", "10.2.1.4", "13.95.96.180"),
        (Internet, NOIP.map(String::from), RT_APP.to_string())
    );
    assert_eq!(
        hop_of(&env, "vm-app1", "10.2.1.4", "13.69.104.200"),
        (NextHopType::None, NOIP.map(String::from), RT_APP.to_string())
    );
}

/// A service-tag UDR routes the tag's prefixes as the tags file lists them
/// (each once), not a merged set: with Storage.WestEurope listing
/// 13.69.40.8/29 and 13.69.40.0/29, a UDR for 13.69.40.0/28 is less
/// specific than the tag route, which therefore wins for 13.69.40.3. A
/// merged set would have made the tag route 13.69.40.0/28 too, where the
/// explicit prefix wins (spec §5.3).
#[test]
fn service_tag_user_routes_use_the_prefixes_the_tags_file_lists() {
    let root = common::root();
    let text = std::fs::read_to_string(root.join("demo/ServiceTags_Demo.json")).expect("demo tags");
    let mut tags: serde_json::Value = serde_json::from_str(&text).expect("tags json");
    let listed = ["13.95.240.16/28", "13.69.40.8/29", "13.69.40.0/29", "2603:1020:207::/48"];
    for v in tags["values"].as_array_mut().expect("values") {
        if v["name"] == "Storage.WestEurope" {
            v["properties"]["addressPrefixes"] = serde_json::json!([&listed[..], &["13.69.40.8/29"]].concat());
        }
    }
    let rt = std::fs::read_to_string(root.join("tests/data/tag-routes/rt-app.json")).expect("route table");
    let mut rt: serde_json::Value = serde_json::from_str(&rt).expect("route table json");
    rt["properties"]["routes"].as_array_mut().expect("routes").push(serde_json::json!({
        "name": "storage-block-to-fw",
        "properties": {"addressPrefix": "13.69.40.0/28", "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.0.1.4"}
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ServiceTags_Listed.json"), tags.to_string()).expect("write tags");
    std::fs::create_dir(dir.path().join("rg")).expect("dir");
    std::fs::write(dir.path().join("rg/rt-app.json"), rt.to_string()).expect("write route table");
    let mut env = demo_with(&[dir.path().join("rg").to_str().expect("utf-8 path")]);
    env.load_service_tags(&dir.path().join("ServiceTags_Listed.json")).expect("tags");
    let json = serde_json::to_value(effective_routes(&env, "nic-app1").expect("effective routes")).expect("json");
    let storage: Vec<&serde_json::Value> = json["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter(|r| r["name"] == "storage-direct")
        .collect();
    assert_eq!(storage.len(), 1, "{storage:?}");
    assert_eq!(storage[0]["addressPrefix"], serde_json::json!(listed));
    assert_eq!(storage[0]["tagMap"], serde_json::json!({"Storage.WestEurope": listed}));
    assert_eq!(
        hop_of(&env, "vm-app1", "10.2.1.4", "13.69.40.3"),
        (Internet, NOIP.map(String::from), RT_APP.to_string())
    );
    assert_eq!(
        hop_of(&env, "vm-app1", "10.2.1.4", "13.69.40.12"),
        (Internet, NOIP.map(String::from), RT_APP.to_string())
    );
}

/// The one-line error (exit 1) of next-hop from vm-web1 to `destination`
/// over the demo with `extra` loaded last (a resource file replacing one of
/// the demo's).
fn next_hop_error(extra: &str, destination: &str) -> String {
    let o = netwatch(&[
        "next-hop",
        "--resources",
        "demo/hub-spoke",
        "--resources",
        extra,
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--vm",
        "vm-web1",
        "--source",
        "10.1.1.4",
        "--destination",
        destination,
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// The `VirtualNetworkServiceEndpoint` elements of a NIC's effective
/// routes: (state, addressPrefix, destinationServiceTags, tagMap, source).
fn endpoint_elements(env: &Environment, nic: &str) -> Vec<serde_json::Value> {
    let table = effective_routes(env, nic).expect("effective routes");
    let json = serde_json::to_value(&table).expect("json");
    json["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter(|r| r["nextHopType"] == "VirtualNetworkServiceEndpoint")
        .map(|r| {
            serde_json::json!([
                r["state"],
                r["addressPrefix"],
                r["destinationServiceTags"],
                r["tagMap"],
                r["source"]
            ])
        })
        .collect()
}

/// A subnet's service endpoint is listed as one effective route, all its
/// service's prefixes in `addressPrefix` in the order the tags file lists
/// them (spec §5.4 table, row 10: `Default | Active | [X.X.X.X] |
/// VirtualNetworkServiceEndpoint`; §5.5: `addressPrefix` is an array), not
/// one element per prefix; `destinationServiceTags` and `tagMap` stay
/// empty (the spec shows no tag on these routes). An endpoint of several
/// locations lists each region's regional tag in turn. Next hop still
/// goes prefix by prefix.
#[test]
fn service_endpoint_routes_are_listed_once_per_endpoint() {
    let tags_file = common::root().join("demo/ServiceTags_Demo.json");
    let mut env = demo_with(&[]);
    env.load_service_tags(&tags_file).expect("tags");
    let storage = ["13.69.40.16/28", "13.95.96.176/28", "13.95.240.16/28", "2603:1020:207::/48"];
    assert_eq!(
        endpoint_elements(&env, "nic-web1"),
        [serde_json::json!(["Active", storage, [], {}, "Default"])]
    );
    let endpoint = (VirtualNetworkServiceEndpoint, NOIP.map(String::from), SYS.to_string());
    for dst in ["13.69.40.20", "13.95.96.180", "13.95.240.20"] {
        assert_eq!(hop_of(&env, "vm-web1", "10.1.1.4", dst), endpoint, "{dst}");
    }
    assert_eq!(hop_of(&env, "vm-web1", "fd00:1:0:1::4", "2603:1020:207::9"), endpoint);

    // The tags file's order, as written: not sorted, adjacent prefixes not
    // merged (13.69.40.0/29 and 13.69.40.8/29 make 13.69.40.0/28); a
    // prefix written twice comes once.
    let text = std::fs::read_to_string(&tags_file).expect("demo tags");
    let mut tags: serde_json::Value = serde_json::from_str(&text).expect("tags json");
    let listed = ["13.95.240.16/28", "13.69.40.8/29", "13.69.40.0/29", "2603:1020:207::/48"];
    let written = [&listed[..], &["13.69.40.8/29"]].concat();
    for v in tags["values"].as_array_mut().expect("values") {
        if v["name"] == "Storage.WestEurope" {
            v["properties"]["addressPrefixes"] = serde_json::json!(written);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ServiceTags_Unsorted.json");
    std::fs::write(&path, tags.to_string()).expect("write tags");
    let mut env = demo_with(&[]);
    env.load_service_tags(&path).expect("tags");
    assert_eq!(
        endpoint_elements(&env, "nic-web1"),
        [serde_json::json!(["Active", listed, [], {}, "Default"])]
    );
    assert_eq!(hop_of(&env, "vm-web1", "10.1.1.4", "13.69.40.3"), endpoint);
    assert_eq!(hop_of(&env, "vm-web1", "10.1.1.4", "13.69.40.12"), endpoint);

    // snet-app (IPv4 only): locations westeurope and northeurope, one
    // element, Storage.WestEurope's IPv4 prefixes then Storage.NorthEurope's.
    let mut env = demo_with(&["tests/data/ipv4-endpoint"]);
    env.load_service_tags(&common::real_service_tags()).expect("tags");
    let file = std::fs::File::open(common::real_service_tags()).expect("real tags");
    let real: serde_json::Value = serde_json::from_reader(flate2::read::GzDecoder::new(file)).expect("real tags json");
    let mut want: Vec<String> = Vec::new();
    for tag in ["Storage.WestEurope", "Storage.NorthEurope"] {
        let v = real["values"]
            .as_array()
            .expect("values")
            .iter()
            .find(|v| v["name"] == tag)
            .expect(tag);
        for p in v["properties"]["addressPrefixes"].as_array().expect("prefixes") {
            let p = p.as_str().expect("prefix").to_string();
            if !p.contains(':') && !want.contains(&p) {
                want.push(p);
            }
        }
    }
    assert!(want.len() > 50, "{} prefixes", want.len());
    assert_eq!(
        endpoint_elements(&env, "nic-app1"),
        [serde_json::json!(["Active", want, [], {}, "Default"])]
    );
    assert_eq!(hop_of(&env, "vm-app1", "10.2.1.4", "13.70.208.17"), endpoint);
}
