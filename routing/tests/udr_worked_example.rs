//! Spec §5.4 worked example (Azure UDR overview): Subnet1 with six UDRs and
//! Subnet2 without, route by route, plus next-hop queries (spec §4).
//!
//! Values the doc leaves as `[X.X.X.X]`: the gateway's next hop is taken as
//! 10.0.255.4 and the service endpoint's prefix as 20.38.0.0/16. The doc's
//! row 8 says source `Default` for the gateway route; decision 8 says
//! `VirtualNetworkGateway`, which is what we check.

use std::net::IpAddr;

use netwatch_routing::ipnet::IpNet;
use netwatch_routing::{
    effective_routes, CandidateOutcome, EffectiveRouteTable, GatewayRoute, InvalidReason, NextHopType as T, RouteSource as S, RouteState,
    RouteTableInput, ServiceEndpointRoute, SubnetRoutingInput, UserRoute, SYSTEM_ROUTE,
};

const RT: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/routeTables/Subnet1-RT";
const NVA: &str = "10.0.100.4";
const GW: &str = "10.0.255.4";
const SE: &str = "20.38.0.0/16";

fn p(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn base() -> SubnetRoutingInput {
    SubnetRoutingInput {
        vnet_address_space: vec![p("10.0.0.0/16")],
        peerings: vec![vec![p("10.1.0.0/16"), p("10.2.0.0/16")]],
        gateway_routes: vec![GatewayRoute {
            address_prefix: p("10.10.0.0/16"),
            next_hop_ips: vec![ip(GW)],
            express_route: false,
        }],
        service_endpoint_routes: vec![],
        route_table: None,
        service_tags: Default::default(),
        express_route_gateway: false,
    }
}

fn subnet1() -> EffectiveRouteTable {
    let mut input = base();
    input.service_endpoint_routes = vec![ServiceEndpointRoute::new("Microsoft.Storage", vec![p(SE)])];
    input.route_table = Some(RouteTableInput {
        id: RT.into(),
        disable_bgp_route_propagation: false,
        routes: vec![
            UserRoute::new("Within-VNet1", "10.0.0.0/16", T::VirtualAppliance, Some(NVA)),
            UserRoute::new("Within-Subnet1", "10.0.0.0/24", T::VnetLocal, None),
            UserRoute::new("ToVNet2-1-Drop", "10.1.0.0/16", T::None, None),
            UserRoute::new("ToVNet2-2-Drop", "10.2.0.0/16", T::None, None),
            UserRoute::new("To-On-Prem", "10.10.0.0/16", T::VirtualAppliance, Some(NVA)),
            UserRoute::new("Default-NVA", "0.0.0.0/0", T::VirtualAppliance, Some(NVA)),
        ],
    });
    effective_routes(&input).unwrap()
}

fn subnet2() -> EffectiveRouteTable {
    effective_routes(&base()).unwrap()
}

type Row = (S, RouteState, &'static str, T, Option<&'static str>, Option<&'static str>);

/// (source, state, prefix, next hop type, next hop ip, name), owned.
type OwnedRow = (S, RouteState, String, T, Option<String>, Option<String>);

fn rows(t: &EffectiveRouteTable) -> Vec<OwnedRow> {
    t.routes()
        .iter()
        .map(|r| {
            (
                r.route.source,
                r.state,
                r.route.address_prefix.to_string(),
                r.route.next_hop_type,
                r.route.next_hop_ip().map(|i| i.to_string()),
                r.route.name.clone(),
            )
        })
        .collect()
}

fn expect(want: &[Row]) -> Vec<OwnedRow> {
    want.iter()
        .map(|(s, st, pr, t, ip, n)| (*s, *st, pr.to_string(), *t, ip.map(str::to_owned), n.map(str::to_owned)))
        .collect()
}

use RouteState::{Active as A, Invalid as I};

#[test]
fn subnet1_route_by_route() {
    let t = subnet1();
    // Our listing order: system, gateway, user (see effective.rs docs). The
    // doc's row IDs are given in the comments.
    let want: [Row; 12] = [
        (S::Default, I, "10.0.0.0/16", T::VnetLocal, None, None),          // 1
        (S::Default, I, "0.0.0.0/0", T::Internet, None, None),             // 11
        (S::Default, I, "10.1.0.0/16", T::VNetPeering, None, None),        // 4
        (S::Default, I, "10.2.0.0/16", T::VNetPeering, None, None),        // 5
        (S::Default, A, SE, T::VirtualNetworkServiceEndpoint, None, None), // 10
        (
            S::VirtualNetworkGateway,
            I,
            "10.10.0.0/16",
            T::VirtualNetworkGateway,
            Some(GW),
            None,
        ), // 8
        (S::User, A, "10.0.0.0/16", T::VirtualAppliance, Some(NVA), Some("Within-VNet1")), // 2
        (S::User, A, "10.0.0.0/24", T::VnetLocal, None, Some("Within-Subnet1")), // 3
        (S::User, A, "10.1.0.0/16", T::None, None, Some("ToVNet2-1-Drop")), // 6
        (S::User, A, "10.2.0.0/16", T::None, None, Some("ToVNet2-2-Drop")), // 7
        (S::User, A, "10.10.0.0/16", T::VirtualAppliance, Some(NVA), Some("To-On-Prem")), // 9
        (S::User, A, "0.0.0.0/0", T::VirtualAppliance, Some(NVA), Some("Default-NVA")), // 12
    ];
    assert_eq!(rows(&t), expect(&want));
    // Decision 7: the 0/0 UDR removed the reserved None routes.
    assert!(t
        .routes()
        .iter()
        .all(|r| r.route.next_hop_type != T::None || r.route.source == S::User));
    // Every Invalid route says why; the user routes carry the table id.
    for r in t.routes() {
        assert_eq!(r.state == I, r.invalid_reason.is_some());
        assert_eq!(r.route.route_table_id.is_some(), r.route.source == S::User);
    }
    assert_eq!(
        t.routes()[0].invalid_reason,
        Some(InvalidReason::OverriddenBySamePrefix {
            winner: 6,
            winner_source: S::User
        })
    );
    assert_eq!(
        t.routes()[5].invalid_reason,
        Some(InvalidReason::OverriddenBySamePrefix {
            winner: 10,
            winner_source: S::User
        })
    );
}

#[test]
fn subnet2_route_by_route() {
    let t = subnet2();
    // The doc's Subnet2 list lacks 172.16.0.0/12 (spec §5.4 note); §5.1's
    // table has it, and so do we.
    let want: [Row; 9] = [
        (S::Default, A, "10.0.0.0/16", T::VnetLocal, None, None),
        (S::Default, A, "0.0.0.0/0", T::Internet, None, None),
        (S::Default, A, "10.0.0.0/8", T::None, None, None),
        (S::Default, A, "172.16.0.0/12", T::None, None, None),
        (S::Default, A, "192.168.0.0/16", T::None, None, None),
        (S::Default, A, "100.64.0.0/10", T::None, None, None),
        (S::Default, A, "10.1.0.0/16", T::VNetPeering, None, None),
        (S::Default, A, "10.2.0.0/16", T::VNetPeering, None, None),
        (
            S::VirtualNetworkGateway,
            A,
            "10.10.0.0/16",
            T::VirtualNetworkGateway,
            Some(GW),
            None,
        ),
    ];
    assert_eq!(rows(&t), expect(&want));
}

fn hop(t: &EffectiveRouteTable, dst: &str) -> (T, Option<String>, String) {
    let r = t.next_hop_result(ip(dst)).unwrap();
    (r.next_hop_type, r.next_hop_ip_address, r.route_table_id)
}

#[test]
fn subnet1_next_hops() {
    let t = subnet1();
    let va = |s: &str| (T::VirtualAppliance, Some(NVA.to_string()), s.to_string());
    // Doc: 10.0.0.5 matches 10.0.0.0/24 over 10.0.0.0/16; 10.0.1.5 matches /16.
    assert_eq!(hop(&t, "10.0.0.5"), (T::VnetLocal, None, RT.into()));
    assert_eq!(hop(&t, "10.0.1.5"), va(RT));
    assert_eq!(hop(&t, "10.1.200.1"), (T::None, None, RT.into()));
    assert_eq!(hop(&t, "10.2.0.1"), (T::None, None, RT.into()));
    assert_eq!(hop(&t, "10.10.3.3"), va(RT));
    assert_eq!(hop(&t, "8.8.8.8"), va(RT));
    assert_eq!(hop(&t, "192.168.1.1"), va(RT)); // None routes removed
    assert_eq!(hop(&t, "172.31.0.100"), va(RT));
    assert_eq!(hop(&t, "20.38.7.7"), (T::VirtualNetworkServiceEndpoint, None, SYSTEM_ROUTE.into()));
    // Explanation for 10.0.0.5.
    let nh = t.next_hop(ip("10.0.0.5")).unwrap();
    assert_eq!(nh.route.route.name.as_deref(), Some("Within-Subnet1"));
    let outcomes: Vec<(String, S, CandidateOutcome)> = nh
        .candidates
        .iter()
        .map(|c| (c.route.route.address_prefix.to_string(), c.route.route.source, c.outcome.clone()))
        .collect();
    let less = |w: &str| CandidateOutcome::LessSpecific { winner_prefix: p(w) };
    assert_eq!(
        outcomes,
        vec![
            ("10.0.0.0/24".into(), S::User, CandidateOutcome::Selected),
            (
                "10.0.0.0/16".into(),
                S::Default,
                CandidateOutcome::Invalid {
                    reason: InvalidReason::OverriddenBySamePrefix {
                        winner: 6,
                        winner_source: S::User
                    }
                }
            ),
            ("10.0.0.0/16".into(), S::User, less("10.0.0.0/24")),
            (
                "0.0.0.0/0".into(),
                S::Default,
                CandidateOutcome::Invalid {
                    reason: InvalidReason::OverriddenBySamePrefix {
                        winner: 11,
                        winner_source: S::User
                    }
                }
            ),
            ("0.0.0.0/0".into(), S::User, less("10.0.0.0/24")),
        ]
    );
    // Azure's three-field result serializes exactly.
    let json = serde_json::to_value(nh.result()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"nextHopType": "VnetLocal", "nextHopIpAddress": null, "routeTableId": RT})
    );
}

#[test]
fn subnet2_next_hops() {
    let t = subnet2();
    let sys = |ty: T| (ty, None, SYSTEM_ROUTE.to_string());
    // [ROUTE-CLI]: 172.31.0.100 -> None via the default 172.16.0.0/12 route.
    assert_eq!(hop(&t, "172.31.0.100"), sys(T::None));
    assert_eq!(
        t.next_hop(ip("172.31.0.100")).unwrap().route.route.address_prefix,
        p("172.16.0.0/12")
    );
    assert_eq!(hop(&t, "10.0.3.4"), sys(T::VnetLocal));
    assert_eq!(hop(&t, "10.1.0.9"), sys(T::VNetPeering));
    assert_eq!(hop(&t, "10.200.0.1"), sys(T::None));
    assert_eq!(hop(&t, "100.100.0.1"), sys(T::None));
    assert_eq!(hop(&t, "52.1.2.3"), sys(T::Internet));
    // Decision 8: gateway routes answer "System Route" with the gateway IP.
    assert_eq!(
        hop(&t, "10.10.0.1"),
        (T::VirtualNetworkGateway, Some(GW.to_string()), SYSTEM_ROUTE.to_string())
    );
    // No IPv6 space: no IPv6 route at all.
    assert!(t.next_hop(ip("2001:db8::1")).is_none());
}

#[test]
fn effective_route_list_serializes_like_azure() {
    let t = subnet1();
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(
        v["value"][6],
        serde_json::json!({
            "name": "Within-VNet1",
            "disableBgpRoutePropagation": false,
            "hasBgpOverride": false,
            "source": "User",
            "state": "Active",
            "addressPrefix": ["10.0.0.0/16"],
            "destinationServiceTags": [],
            "nextHopIpAddress": [NVA],
            "nextHopType": "VirtualAppliance",
            "tagMap": {}
        })
    );
    assert_eq!(
        v["value"][0],
        serde_json::json!({
            "name": null,
            "disableBgpRoutePropagation": false,
            "hasBgpOverride": false,
            "source": "Default",
            "state": "Invalid",
            "addressPrefix": ["10.0.0.0/16"],
            "destinationServiceTags": [],
            "nextHopIpAddress": [],
            "nextHopType": "VnetLocal",
            "tagMap": {}
        })
    );
    assert_eq!(v["value"].as_array().map(Vec::len), Some(12));
}
