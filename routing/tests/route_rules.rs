//! Spec §5.1-§5.4 rules one at a time: reserved prefixes, decision 7,
//! BGP propagation, same-prefix precedence, the VNet/peering/service
//! endpoint exception, IPv6, and validation errors (§5.3).

use std::net::IpAddr;

use netwatch_routing::ipnet::IpNet;
use netwatch_routing::{
    effective_routes, EffectiveRouteTable, GatewayRoute, InvalidReason, NextHopType as T, RouteError, RouteSource as S, RouteState,
    RouteTableInput, ServiceEndpointRoute, SubnetRoutingInput, UserRoute, SYSTEM_ROUTE,
};

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
fn vnet(spaces: &[&str]) -> SubnetRoutingInput {
    SubnetRoutingInput {
        vnet_address_space: spaces.iter().map(|s| p(s)).collect(),
        ..Default::default()
    }
}
fn gw(prefix: &str) -> GatewayRoute {
    GatewayRoute {
        address_prefix: p(prefix),
        next_hop_ips: vec![ip("10.0.255.4")],
        express_route: false,
    }
}
fn with_table(mut input: SubnetRoutingInput, routes: Vec<UserRoute>) -> SubnetRoutingInput {
    input.route_table = Some(RouteTableInput {
        id: "rt1".into(),
        disable_bgp_route_propagation: false,
        routes,
    });
    input
}
fn find<'a>(t: &'a EffectiveRouteTable, prefix: &str, source: S) -> Option<&'a netwatch_routing::EffectiveRoute> {
    t.routes()
        .iter()
        .find(|r| r.route.address_prefix == p(prefix) && r.route.source == source)
}
fn none_prefixes(t: &EffectiveRouteTable) -> Vec<String> {
    t.routes()
        .iter()
        .filter(|r| r.route.source == S::Default && r.route.next_hop_type == T::None)
        .map(|r| r.route.address_prefix.to_string())
        .collect()
}

#[test]
fn reserved_prefix_in_address_space_becomes_vnetlocal() {
    // §5.1: the reserved prefix itself added to the address space.
    let t = effective_routes(&vnet(&["10.0.0.0/8", "172.16.5.0/24"])).unwrap();
    assert_eq!(none_prefixes(&t), ["172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]);
    let r = find(&t, "10.0.0.0/8", S::Default).unwrap();
    assert_eq!((r.route.next_hop_type, r.state), (T::VnetLocal, RouteState::Active));
    assert_eq!(t.next_hop_result(ip("10.9.9.9")).unwrap().next_hop_type, T::VnetLocal);
    // A range inside a reserved prefix leaves the None route in place.
    assert_eq!(t.next_hop_result(ip("172.16.5.9")).unwrap().next_hop_type, T::VnetLocal);
    assert_eq!(t.next_hop_result(ip("172.16.6.9")).unwrap().next_hop_type, T::None);
}

#[test]
fn range_containing_reserved_prefix_removes_it() {
    // §5.1: a range that contains, but is not equal to, a reserved prefix.
    let t = effective_routes(&vnet(&["100.0.0.0/8", "192.168.0.0/15"])).unwrap();
    assert_eq!(none_prefixes(&t), ["10.0.0.0/8", "172.16.0.0/12"]);
    assert_eq!(t.next_hop_result(ip("100.64.0.1")).unwrap().next_hop_type, T::VnetLocal);
    assert_eq!(t.next_hop_result(ip("192.169.0.1")).unwrap().next_hop_type, T::VnetLocal);
}

#[test]
fn default_route_udr_removes_reserved_none_routes() {
    // Decision 7.
    let input = with_table(
        vnet(&["10.0.0.0/16"]),
        vec![UserRoute::new("all", "0.0.0.0/0", T::VirtualAppliance, Some("10.0.0.4"))],
    );
    let t = effective_routes(&input).unwrap();
    assert!(none_prefixes(&t).is_empty());
    let internet = find(&t, "0.0.0.0/0", S::Default).unwrap();
    assert_eq!(internet.state, RouteState::Invalid);
    // A 0/0 UDR with next hop Internet removes them too.
    let input = with_table(vnet(&["10.0.0.0/16"]), vec![UserRoute::new("i", "0.0.0.0/0", T::Internet, None)]);
    assert!(none_prefixes(&effective_routes(&input).unwrap()).is_empty());
    // Other UDRs do not.
    let input = with_table(vnet(&["10.0.0.0/16"]), vec![UserRoute::new("x", "0.0.0.0/1", T::Internet, None)]);
    assert_eq!(none_prefixes(&effective_routes(&input).unwrap()).len(), 4);
}

#[test]
fn gateway_routes_and_propagation() {
    let mut input = vnet(&["10.0.0.0/16"]);
    input.gateway_routes = vec![gw("192.168.10.0/24"), gw("10.0.0.0/8")];
    let t = effective_routes(&input).unwrap();
    let g = find(&t, "192.168.10.0/24", S::VirtualNetworkGateway).unwrap();
    assert_eq!((g.route.next_hop_type, g.state), (T::VirtualNetworkGateway, RouteState::Active));
    // Same prefix: BGP beats the default None route.
    assert_eq!(find(&t, "10.0.0.0/8", S::Default).unwrap().state, RouteState::Invalid);
    assert_eq!(find(&t, "10.0.0.0/8", S::VirtualNetworkGateway).unwrap().state, RouteState::Active);
    let nh = t.next_hop_result(ip("10.5.0.1")).unwrap();
    assert_eq!(
        (nh.next_hop_type, nh.next_hop_ip_address.as_deref(), nh.route_table_id.as_str()),
        (T::VirtualNetworkGateway, Some("10.0.255.4"), SYSTEM_ROUTE)
    );
    // ...but not the VNet range inside it (longest prefix).
    assert_eq!(t.next_hop_result(ip("10.0.5.1")).unwrap().next_hop_type, T::VnetLocal);

    // disableBgpRoutePropagation: no gateway routes at all.
    input.route_table = Some(RouteTableInput {
        id: "rt".into(),
        disable_bgp_route_propagation: true,
        routes: vec![],
    });
    let t = effective_routes(&input).unwrap();
    assert!(t.routes().iter().all(|r| r.route.source != S::VirtualNetworkGateway));
    assert!(t.routes().iter().all(|r| r.disable_bgp_route_propagation));
    assert_eq!(t.next_hop_result(ip("10.5.0.1")).unwrap().next_hop_type, T::None);
}

#[test]
fn vnet_peering_and_service_endpoint_routes_beat_more_specific_bgp() {
    let mut input = vnet(&["10.0.0.0/16"]);
    input.peerings = vec![vec![p("10.1.0.0/16")]];
    input.service_endpoint_routes = vec![ServiceEndpointRoute::new("Microsoft.Storage", vec![p("20.38.0.0/16")])];
    input.gateway_routes = vec![
        gw("10.0.5.0/24"),   // inside the VNet
        gw("10.0.0.0/16"),   // equal to the VNet
        gw("10.1.128.0/17"), // inside the peering
        gw("20.38.1.0/24"),  // inside the service endpoint
        gw("10.2.0.0/16"),   // elsewhere: stays
    ];
    let t = effective_routes(&input).unwrap();
    for (prefix, sys) in [
        ("10.0.5.0/24", "10.0.0.0/16"),
        ("10.0.0.0/16", "10.0.0.0/16"),
        ("10.1.128.0/17", "10.1.0.0/16"),
        ("20.38.1.0/24", "20.38.0.0/16"),
    ] {
        let r = find(&t, prefix, S::VirtualNetworkGateway).unwrap();
        assert_eq!(r.state, RouteState::Invalid, "{prefix}");
        assert!(
            matches!(r.invalid_reason, Some(InvalidReason::ShadowedBySystemRoute { system_prefix, .. }) if system_prefix == p(sys)),
            "{prefix}: {:?}",
            r.invalid_reason
        );
    }
    assert_eq!(find(&t, "10.0.0.0/16", S::Default).unwrap().state, RouteState::Active);
    assert_eq!(find(&t, "10.2.0.0/16", S::VirtualNetworkGateway).unwrap().state, RouteState::Active);
    assert_eq!(t.next_hop_result(ip("10.0.5.9")).unwrap().next_hop_type, T::VnetLocal);
    assert_eq!(t.next_hop_result(ip("10.1.200.9")).unwrap().next_hop_type, T::VNetPeering);
    assert_eq!(
        t.next_hop_result(ip("20.38.1.1")).unwrap().next_hop_type,
        T::VirtualNetworkServiceEndpoint
    );
    assert_eq!(t.next_hop_result(ip("10.2.0.1")).unwrap().next_hop_type, T::VirtualNetworkGateway);
    // The explanation lists the shadowed BGP route as a loser.
    let nh = t.next_hop(ip("10.0.5.9")).unwrap();
    assert!(nh.candidates.iter().any(
        |c| c.route.route.source == S::VirtualNetworkGateway && matches!(c.outcome, netwatch_routing::CandidateOutcome::Invalid { .. })
    ));
}

#[test]
fn user_route_beats_bgp_and_default_on_equal_prefix() {
    let mut input = vnet(&["10.0.0.0/16"]);
    input.gateway_routes = vec![gw("192.168.0.0/16")];
    let input = with_table(input, vec![UserRoute::new("drop", "192.168.0.0/16", T::None, None)]);
    let t = effective_routes(&input).unwrap();
    let states: Vec<(S, RouteState)> = t
        .routes()
        .iter()
        .filter(|r| r.route.address_prefix == p("192.168.0.0/16"))
        .map(|r| (r.route.source, r.state))
        .collect();
    assert_eq!(
        states,
        [
            (S::Default, RouteState::Invalid),
            (S::VirtualNetworkGateway, RouteState::Invalid),
            (S::User, RouteState::Active)
        ]
    );
    let nh = t.next_hop_result(ip("192.168.1.1")).unwrap();
    assert_eq!((nh.next_hop_type, nh.route_table_id.as_str()), (T::None, "rt1"));
}

#[test]
fn duplicate_gateway_prefix_first_wins() {
    let mut input = vnet(&["10.0.0.0/16"]);
    input.gateway_routes = vec![
        gw("172.20.0.0/16"),
        GatewayRoute {
            address_prefix: p("172.20.0.0/16"),
            next_hop_ips: vec![ip("10.0.255.5")],
            express_route: false,
        },
    ];
    let t = effective_routes(&input).unwrap();
    let g: Vec<_> = t.routes().iter().filter(|r| r.route.source == S::VirtualNetworkGateway).collect();
    assert_eq!(g[0].state, RouteState::Active);
    assert_eq!(
        g[1].invalid_reason,
        Some(InvalidReason::DuplicatePrefix {
            winner: t.routes().len() - 2
        })
    );
}

/// A gateway route with several next hops (the instances of an
/// active-active gateway): one element whose `nextHopIpAddress` lists them
/// all (spec §5.5); the next-hop result shows the first (spec §4).
#[test]
fn gateway_route_lists_every_next_hop() {
    let mut input = vnet(&["10.0.0.0/16"]);
    input.gateway_routes = vec![GatewayRoute {
        address_prefix: p("172.20.0.0/16"),
        next_hop_ips: vec![ip("10.0.255.4"), ip("10.0.255.5")],
        express_route: false,
    }];
    let t = effective_routes(&input).unwrap();
    let g = find(&t, "172.20.0.0/16", S::VirtualNetworkGateway).unwrap();
    assert_eq!(g.state, RouteState::Active);
    let v = serde_json::to_value(g).unwrap();
    assert_eq!(v["nextHopIpAddress"], serde_json::json!(["10.0.255.4", "10.0.255.5"]));
    let nh = t.next_hop_result(ip("172.20.1.1")).unwrap();
    assert_eq!(nh.next_hop_ip_address.as_deref(), Some("10.0.255.4"));
    assert_eq!(t.next_hop(ip("172.20.1.1")).unwrap().next_hop_ip, Some(ip("10.0.255.4")));
}

#[test]
fn ipv6_dual_stack() {
    let mut input = vnet(&["10.0.0.0/16", "fd00:db8:deca::/48"]);
    input.peerings = vec![vec![p("fd00:db8:beef::/48")]];
    let input = with_table(
        input,
        vec![UserRoute::new(
            "v6-nva",
            "2001:db8::/32",
            T::VirtualAppliance,
            Some("fd00:db8:deca::4"),
        )],
    );
    let t = effective_routes(&input).unwrap();
    let r = find(&t, "::/0", S::Default).unwrap();
    assert_eq!((r.route.next_hop_type, r.state), (T::Internet, RouteState::Active));
    let q = |d: &str| t.next_hop_result(ip(d)).unwrap();
    assert_eq!(q("fd00:db8:deca::9").next_hop_type, T::VnetLocal);
    assert_eq!(q("fd00:db8:beef::9").next_hop_type, T::VNetPeering);
    assert_eq!(q("2606:4700::1").next_hop_type, T::Internet);
    let nva = q("2001:db8:1::1");
    assert_eq!(
        (nva.next_hop_type, nva.next_hop_ip_address.as_deref()),
        (T::VirtualAppliance, Some("fd00:db8:deca::4"))
    );
    assert_eq!(q("10.0.0.1").next_hop_type, T::VnetLocal);
}

fn err(routes: Vec<UserRoute>) -> RouteError {
    effective_routes(&with_table(vnet(&["10.0.0.0/16"]), routes)).unwrap_err()
}

#[test]
fn validation_errors_name_table_route_and_field() {
    let e = err(vec![UserRoute::new("nva", "0.0.0.0/0", T::VirtualAppliance, None)]);
    assert_eq!(
        e,
        RouteError::MissingNextHopIp {
            route_table: "rt1".into(),
            index: 0,
            route: "nva".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "route table rt1: route nva: nextHopIpAddress is required when nextHopType is VirtualAppliance"
    );
    let e = err(vec![UserRoute::new("nva", "0.0.0.0/0", T::VirtualAppliance, Some(""))]);
    assert!(matches!(e, RouteError::MissingNextHopIp { .. }));

    let e = err(vec![UserRoute::new("inet", "0.0.0.0/0", T::Internet, Some("10.0.0.4"))]);
    assert!(
        matches!(
            e,
            RouteError::NextHopIpNotAllowed {
                next_hop_type: T::Internet,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("route inet: nextHopIpAddress"));

    let e = err(vec![UserRoute::new("bad", "10.0.0.0/33", T::None, None)]);
    assert!(matches!(&e, RouteError::MalformedAddressPrefix { value, .. } if value == "10.0.0.0/33"));
    assert!(e.to_string().contains("route table rt1: route bad: addressPrefix"));

    let e = err(vec![UserRoute::new("host", "10.0.0.1/24", T::None, None)]);
    assert!(matches!(e, RouteError::AddressPrefixHostBits { network, .. } if network == p("10.0.0.0/24")));

    let e = err(vec![UserRoute::new("tag", "Storage.WestUS", T::Internet, None)]);
    assert!(matches!(&e, RouteError::UnknownServiceTag { tag, .. } if tag == "Storage.WestUS"));
    assert_eq!(
        e.to_string(),
        "route table rt1: route tag: addressPrefix \"Storage.WestUS\" is not a known service tag \
         (load the service tags file with --service-tags, or fix the tag name)"
    );

    let e = err(vec![UserRoute::new("peer", "10.1.0.0/16", T::VNetPeering, None)]);
    assert!(matches!(
        e,
        RouteError::NextHopTypeNotAllowed {
            next_hop_type: T::VNetPeering,
            ..
        }
    ));

    let mut r = UserRoute::new("typo", "10.1.0.0/16", T::None, None);
    r.next_hop_type = "VirtualApplianceX".into();
    assert!(matches!(err(vec![r]), RouteError::UnknownNextHopType { value, .. } if value == "VirtualApplianceX"));

    let e = err(vec![UserRoute::new("nva", "10.1.0.0/16", T::VirtualAppliance, Some("10.0.0.256"))]);
    assert!(matches!(e, RouteError::MalformedNextHopIp { .. }));
    let e = err(vec![UserRoute::new("nva", "10.1.0.0/16", T::VirtualAppliance, Some("fd00::4"))]);
    assert!(matches!(e, RouteError::NextHopIpFamilyMismatch { .. }));

    let e = err(vec![
        UserRoute::new("a", "10.1.0.0/16", T::None, None),
        UserRoute::new("b", "10.1.0.0/16", T::Internet, None),
    ]);
    assert_eq!(
        e,
        RouteError::DuplicateAddressPrefix {
            route_table: "rt1".into(),
            index: 1,
            route: "b".into(),
            other_route: "a".into(),
            prefix: "10.1.0.0/16".into()
        }
    );
    let e = err(vec![
        UserRoute::new("a", "10.1.0.0/16", T::None, None),
        UserRoute::new("A", "10.2.0.0/16", T::None, None),
    ]);
    assert!(matches!(e, RouteError::DuplicateRouteName { .. }));

    let many = (0..401)
        .map(|i| UserRoute::new(&format!("r{i}"), &format!("10.{}.{}.0/24", i / 256, i % 256), T::None, None))
        .collect();
    assert!(matches!(err(many), RouteError::TooManyRoutes { count: 401, max: 400, .. }));

    let mut bad = vnet(&["10.0.0.0/16"]);
    bad.vnet_address_space.push(p("10.1.0.1/16"));
    assert!(matches!(
        effective_routes(&bad),
        Err(RouteError::SystemPrefixHostBits {
            field: "vnetAddressSpace",
            ..
        })
    ));
}

#[test]
fn next_hop_type_spellings() {
    for (s, t) in [
        ("VirtualNetworkGateway", T::VirtualNetworkGateway),
        ("VnetLocal", T::VnetLocal),
        ("VNETLocal", T::VnetLocal),
        ("Internet", T::Internet),
        ("virtualappliance", T::VirtualAppliance),
        ("None", T::None),
        ("Null", T::None),
        ("VNetPeering", T::VNetPeering),
        ("VNet peering", T::VNetPeering),
        ("VirtualNetworkServiceEndpoint", T::VirtualNetworkServiceEndpoint),
        ("VPNGateway", T::VirtualNetworkGateway),
    ] {
        assert_eq!(s.parse::<T>().unwrap(), t, "{s}");
    }
    assert!("HyperNetGateway".parse::<T>().is_err());
    let all = [
        T::VirtualNetworkGateway,
        T::VnetLocal,
        T::Internet,
        T::VirtualAppliance,
        T::None,
        T::VNetPeering,
        T::VirtualNetworkServiceEndpoint,
    ];
    let json = serde_json::to_string(&all).unwrap();
    assert_eq!(
        json,
        r#"["VirtualNetworkGateway","VnetLocal","Internet","VirtualAppliance","None","VNetPeering","VirtualNetworkServiceEndpoint"]"#
    );
    assert_eq!(
        serde_json::to_string(&[S::Default, S::User, S::VirtualNetworkGateway, S::Unknown]).unwrap(),
        r#"["Default","User","VirtualNetworkGateway","Unknown"]"#
    );
    for t in all {
        assert_eq!(t.to_string().parse::<T>().unwrap(), t);
    }
}

fn tagged(routes: Vec<UserRoute>) -> SubnetRoutingInput {
    let mut input = with_table(vnet(&["10.0.0.0/16"]), routes);
    input.service_tags = [
        ("Storage", vec!["20.38.0.0/16", "20.60.0.0/16", "2603:1000::/40"]),
        ("Storage.EastUS", vec!["20.38.0.0/16"]),
        ("AzureCloud", vec!["20.0.0.0/8", "20.38.0.0/16"]),
        ("AzureCloud.eastus", vec!["20.38.0.0/16"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(p).collect()))
    .collect();
    input
}

#[test]
fn service_tag_user_routes() {
    // §5.3: a tag route expands to the tag's prefixes (IPv4 only for an
    // IPv4 appliance); tags match case-insensitively (decision 4).
    let input = tagged(vec![UserRoute::new(
        "storage-nva",
        "storage",
        T::VirtualAppliance,
        Some("10.0.0.4"),
    )]);
    let t = effective_routes(&input).unwrap();
    let user: Vec<(String, Option<String>)> = t
        .routes()
        .iter()
        .filter(|r| r.route.source == S::User)
        .map(|r| (r.route.address_prefix.to_string(), r.route.service_tag.clone()))
        .collect();
    assert_eq!(
        user,
        [
            ("20.38.0.0/16".into(), Some("Storage".into())),
            ("20.60.0.0/16".into(), Some("Storage".into()))
        ]
    );
    assert_eq!(t.next_hop_result(ip("20.60.1.1")).unwrap().next_hop_type, T::VirtualAppliance);
    // A tag route with a 0.0.0.0/0-free tag keeps the reserved None routes.
    assert_eq!(none_prefixes(&t).len(), 4);

    // Same prefix: explicit > regional tag > top-level tag > AzureCloud regional > AzureCloud.
    let input = tagged(vec![
        UserRoute::new("cloud", "AzureCloud", T::Internet, None),
        UserRoute::new("cloud-region", "AzureCloud.eastus", T::None, None),
        UserRoute::new("top", "Storage", T::Internet, None),
        UserRoute::new("regional", "Storage.EastUS", T::VnetLocal, None),
    ]);
    let t = effective_routes(&input).unwrap();
    let winner = t.next_hop(ip("20.38.0.1")).unwrap();
    assert_eq!(winner.route.route.name.as_deref(), Some("regional"));
    let states: Vec<(Option<String>, RouteState)> = t
        .routes()
        .iter()
        .filter(|r| r.route.address_prefix == p("20.38.0.0/16"))
        .map(|r| (r.route.name.clone(), r.state))
        .collect();
    assert_eq!(
        states,
        [
            (Some("cloud".into()), RouteState::Invalid),
            (Some("cloud-region".into()), RouteState::Invalid),
            (Some("top".into()), RouteState::Invalid),
            (Some("regional".into()), RouteState::Active),
        ]
    );
    // AzureCloud's other prefix is still used.
    assert_eq!(t.next_hop_result(ip("20.1.1.1")).unwrap().next_hop_type, T::Internet);
    let mut with_explicit = tagged(vec![
        UserRoute::new("regional", "Storage.EastUS", T::VnetLocal, None),
        UserRoute::new("explicit", "20.38.0.0/16", T::None, None),
    ]);
    let t = effective_routes(&with_explicit).unwrap();
    assert_eq!(t.next_hop(ip("20.38.0.1")).unwrap().route.route.name.as_deref(), Some("explicit"));

    // Errors: the same tag twice; more than 25 tag routes.
    if let Some(rt) = with_explicit.route_table.as_mut() {
        rt.routes.push(UserRoute::new("again", "STORAGE.EASTUS", T::None, None));
    }
    assert!(matches!(
        effective_routes(&with_explicit),
        Err(RouteError::DuplicateAddressPrefix { other_route, .. }) if other_route == "regional"
    ));
    let mut many = tagged(vec![]);
    for i in 0..26 {
        many.service_tags.insert(format!("Tag{i}"), vec![p(&format!("30.{i}.0.0/16"))]);
    }
    many.route_table.as_mut().unwrap().routes = (0..26)
        .map(|i| UserRoute::new(&format!("r{i}"), &format!("Tag{i}"), T::None, None))
        .collect();
    assert!(matches!(
        effective_routes(&many),
        Err(RouteError::TooManyServiceTagRoutes { count: 26, max: 25, .. })
    ));
}

/// A service-tag user route is listed once, all its prefixes in
/// `addressPrefix`, the tag in `destinationServiceTags` and `tagMap`
/// (spec §5.5); prefixes that lose to another route form a second,
/// Invalid element. `routes()` keeps one route per prefix.
#[test]
fn service_tag_user_route_is_listed_once() {
    let input = tagged(vec![
        UserRoute::new("storage-nva", "Storage", T::VirtualAppliance, Some("10.0.0.4")),
        UserRoute::new("east", "Storage.EastUS", T::Internet, None),
    ]);
    let t = effective_routes(&input).unwrap();
    assert_eq!(t.routes().iter().filter(|r| r.route.source == S::User).count(), 3);
    let v = serde_json::to_value(&t).unwrap();
    let user: Vec<&serde_json::Value> = v["value"].as_array().unwrap().iter().filter(|r| r["source"] == "User").collect();
    let shape = |r: &serde_json::Value| {
        (
            r["name"].clone(),
            r["state"].clone(),
            r["addressPrefix"].clone(),
            r["destinationServiceTags"].clone(),
            r["tagMap"].clone(),
        )
    };
    use serde_json::json;
    assert_eq!(
        user.iter().map(|r| shape(r)).collect::<Vec<_>>(),
        [
            (
                json!("storage-nva"),
                json!("Invalid"),
                json!(["20.38.0.0/16"]),
                json!(["Storage"]),
                json!({"Storage": ["20.38.0.0/16"]})
            ),
            (
                json!("storage-nva"),
                json!("Active"),
                json!(["20.60.0.0/16"]),
                json!(["Storage"]),
                json!({"Storage": ["20.60.0.0/16"]})
            ),
            (
                json!("east"),
                json!("Active"),
                json!(["20.38.0.0/16"]),
                json!(["Storage.EastUS"]),
                json!({"Storage.EastUS": ["20.38.0.0/16"]})
            ),
        ]
    );
    assert_eq!(user[0]["nextHopIpAddress"], json!(["10.0.0.4"]));
    // A route without a tag: empty tag fields, as Azure writes them.
    let first = &v["value"][0];
    assert_eq!(
        (first["destinationServiceTags"].clone(), first["tagMap"].clone()),
        (json!([]), json!({}))
    );
}

#[test]
fn gateway_user_route_needs_a_vpn_gateway() {
    // §5.3: VirtualNetworkGateway next hops are for VPN gateways only, not
    // ExpressRoute and not VPN+ER coexistence.
    let routes = vec![UserRoute::new("to-gw", "10.60.0.0/16", T::VirtualNetworkGateway, None)];
    let vpn = effective_routes(&with_table(vnet(&["10.1.0.0/16"]), routes.clone())).unwrap();
    let r = find(&vpn, "10.60.0.0/16", S::User).unwrap();
    assert_eq!(r.state, RouteState::Active);
    assert_eq!(
        vpn.next_hop_result(ip("10.60.1.1")).unwrap().next_hop_type,
        T::VirtualNetworkGateway
    );
    let mut input = with_table(vnet(&["10.1.0.0/16"]), routes);
    input.express_route_gateway = true;
    let er = effective_routes(&input).unwrap();
    let r = find(&er, "10.60.0.0/16", S::User).unwrap();
    assert_eq!(r.state, RouteState::Invalid);
    assert_eq!(r.invalid_reason, Some(netwatch_routing::InvalidReason::GatewayNotVpn));
    // The range falls back to the reserved 10.0.0.0/8 None route.
    assert_eq!(er.next_hop_result(ip("10.60.1.1")).unwrap().next_hop_type, T::None);
}

/// A route table is checked on its own, without a subnet or the service
/// tags (`check_route_table`, which `effective_routes` runs too), and each
/// error says which route and field it is about as data
/// (`RouteError::site`), not only in its message.
#[test]
fn route_table_checks_alone_and_errors_carry_the_route_index() {
    use netwatch_routing::{check_route_table, RouteDestination, RouteErrorSite as Site, RouteField as F};
    let table = |routes: Vec<UserRoute>| RouteTableInput {
        id: "rt1".into(),
        disable_bgp_route_propagation: false,
        routes,
    };
    let ok = |i: usize| UserRoute::new(&format!("ok{i}"), &format!("10.{i}.0.0/16"), T::None, None);
    // The bad route is the third; its index and field come with the error.
    let site = |bad: UserRoute| {
        let e = check_route_table(&table(vec![ok(1), ok(2), bad])).unwrap_err();
        (e.site(), e)
    };
    for (bad, field) in [
        (UserRoute::new("b", "10.9.0.0/33", T::None, None), F::AddressPrefix),
        (UserRoute::new("b", "10.0.0.0/+8", T::None, None), F::AddressPrefix),
        (UserRoute::new("b", "10.9.0.1/16", T::None, None), F::AddressPrefix),
        (UserRoute::new("b", "10.1.0.0/16", T::Internet, None), F::AddressPrefix),
        (UserRoute::new("b", "10.9.0.0/16", T::VNetPeering, None), F::NextHopType),
        (
            UserRoute::new("b", "10.9.0.0/16", T::VirtualNetworkServiceEndpoint, None),
            F::NextHopType,
        ),
        (UserRoute::new("b", "10.9.0.0/16", T::VirtualAppliance, None), F::NextHopIpAddress),
        (
            UserRoute::new("b", "10.9.0.0/16", T::VirtualAppliance, Some("10.0.0.256")),
            F::NextHopIpAddress,
        ),
        (
            UserRoute::new("b", "10.9.0.0/16", T::VirtualAppliance, Some("fd00::4")),
            F::NextHopIpAddress,
        ),
        (UserRoute::new("b", "10.9.0.0/16", T::None, Some("10.0.1.4")), F::NextHopIpAddress),
        (UserRoute::new("OK1", "10.9.0.0/16", T::None, None), F::Name),
    ] {
        let (s, e) = site(bad);
        assert_eq!(s, Some(Site::Route { index: 2, field }), "{e}");
    }
    let mut bogus = UserRoute::new("b", "10.9.0.0/16", T::None, None);
    bogus.next_hop_type = "Bogus".into();
    let (s, e) = site(bogus);
    assert_eq!(
        s,
        Some(Site::Route {
            index: 2,
            field: F::NextHopType
        }),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("expected VirtualNetworkGateway, VnetLocal, Internet, VirtualAppliance or None"),
        "{e}"
    );

    // A duplicate name is blamed on the later route, and names the earlier.
    let mut routes: Vec<UserRoute> = (0..8).map(ok).collect();
    routes.push(UserRoute::new("OK0", "10.99.0.0/16", T::None, None));
    let e = check_route_table(&table(routes)).unwrap_err();
    assert_eq!(e.site(), Some(Site::Route { index: 8, field: F::Name }), "{e}");
    assert!(
        matches!(&e, RouteError::DuplicateRouteName { other_index: 0, other_route, .. } if other_route == "ok0"),
        "{e:?}"
    );

    // Table-wide limits are about the route list.
    let many: Vec<UserRoute> = (0..401)
        .map(|i| UserRoute::new(&format!("r{i}"), &format!("10.{}.{}.0/24", i / 256, i % 256), T::None, None))
        .collect();
    assert_eq!(check_route_table(&table(many)).unwrap_err().site(), Some(Site::Routes));

    // A service tag passes without the tags; building routes needs it known.
    let tagged = table(vec![ok(1), UserRoute::new("st", "Storage.WestEurope", T::Internet, None)]);
    let checked = check_route_table(&tagged).unwrap();
    assert_eq!(checked[1].destination, RouteDestination::ServiceTag("Storage.WestEurope".into()));
    assert_eq!(checked[0].destination, RouteDestination::Prefix(p("10.1.0.0/16")));
    let input = SubnetRoutingInput {
        route_table: Some(tagged),
        ..vnet(&["10.0.0.0/16"])
    };
    let e = effective_routes(&input).unwrap_err();
    assert_eq!(
        e.site(),
        Some(Site::Route {
            index: 1,
            field: F::AddressPrefix
        }),
        "{e}"
    );
}

/// A service endpoint's system route is listed once, all the service's
/// prefixes in `addressPrefix` in the order given (spec §5.4 table, row
/// 10; §5.5 `addressPrefix` is an array), with no tag (the spec shows none
/// on it); prefixes another route wins form a second, Invalid element.
/// `routes()` and next hop keep one route per prefix.
#[test]
fn service_endpoint_route_is_listed_once_per_endpoint() {
    let mut input = with_table(
        vnet(&["10.0.0.0/16", "fd00::/48"]),
        vec![UserRoute::new("sql-one-direct", "13.69.104.0/26", T::Internet, None)],
    );
    input.service_endpoint_routes = vec![
        // Not in address order: the order given is kept.
        ServiceEndpointRoute::new(
            "Microsoft.Storage",
            vec![p("20.60.0.0/16"), p("20.38.0.0/16"), p("2603:1020:207::/48")],
        ),
        ServiceEndpointRoute::new("Microsoft.Sql", vec![p("13.69.104.0/26"), p("13.69.104.192/26")]),
    ];
    let t = effective_routes(&input).unwrap();
    let per_prefix: Vec<(String, Option<String>)> = t
        .routes()
        .iter()
        .filter(|r| r.route.next_hop_type == T::VirtualNetworkServiceEndpoint)
        .map(|r| (r.route.address_prefix.to_string(), r.route.service_endpoint.clone()))
        .collect();
    let storage = Some("Microsoft.Storage".to_string());
    let sql = Some("Microsoft.Sql".to_string());
    assert_eq!(
        per_prefix,
        [
            ("20.60.0.0/16".into(), storage.clone()),
            ("20.38.0.0/16".into(), storage.clone()),
            ("2603:1020:207::/48".into(), storage),
            ("13.69.104.0/26".into(), sql.clone()),
            ("13.69.104.192/26".into(), sql),
        ]
    );
    let v = serde_json::to_value(&t).unwrap();
    use serde_json::json;
    let listed: Vec<serde_json::Value> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["nextHopType"] == "VirtualNetworkServiceEndpoint")
        .cloned()
        .collect();
    let element = |state: &str, prefixes: &[&str]| {
        json!({
            "name": null, "disableBgpRoutePropagation": false, "hasBgpOverride": false, "source": "Default",
            "state": state, "addressPrefix": prefixes, "destinationServiceTags": [], "nextHopIpAddress": [],
            "nextHopType": "VirtualNetworkServiceEndpoint", "tagMap": {}
        })
    };
    assert_eq!(
        listed,
        [
            element("Active", &["20.60.0.0/16", "20.38.0.0/16", "2603:1020:207::/48"]),
            element("Invalid", &["13.69.104.0/26"]),
            element("Active", &["13.69.104.192/26"]),
        ]
    );
    // Longest-prefix match still goes prefix by prefix.
    let endpoint = (T::VirtualNetworkServiceEndpoint, SYSTEM_ROUTE.to_string());
    let hop = |d: &str| {
        let r = t.next_hop_result(ip(d)).unwrap();
        (r.next_hop_type, r.route_table_id)
    };
    for d in ["20.60.1.1", "20.38.7.7", "2603:1020:207::9", "13.69.104.200"] {
        assert_eq!(hop(d), endpoint, "{d}");
    }
    assert_eq!(hop("13.69.104.5"), (T::Internet, "rt1".to_string()));
    assert_eq!(hop("20.39.0.1"), (T::Internet, SYSTEM_ROUTE.to_string()));
}
