//! Property test: on random subnets, exactly one route per prefix is
//! Active, and `next_hop` equals a brute-force longest-prefix scan over the
//! Active routes (spec §5.4).

use std::net::{IpAddr, Ipv4Addr};

use netwatch_routing::ipnet::{IpNet, Ipv4Net};
use netwatch_routing::{
    effective_routes, GatewayRoute, NextHopType as T, RouteState, RouteTableInput, ServiceEndpointRoute, SubnetRoutingInput, UserRoute,
};
use proptest::prelude::*;

fn net() -> impl Strategy<Value = IpNet> {
    // Clustered in 10.0.0.0/14 and 192.168/16 so that routes overlap.
    (
        prop_oneof![(0u32..4).prop_map(|x| 0x0a00_0000 | x << 16), Just(0xc0a8_0000u32), any::<u32>()],
        0u32..65536,
        0u8..=28,
    )
        .prop_map(|(base, lo, len)| {
            let net = Ipv4Net::new(Ipv4Addr::from(base | lo), len).unwrap_or_default().trunc();
            IpNet::V4(net)
        })
}

fn user_route() -> impl Strategy<Value = (IpNet, u8)> {
    (net(), 0u8..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn next_hop_is_longest_active_match(
        space in prop::collection::vec(net(), 1..3),
        peer in prop::collection::vec(net(), 0..3),
        gws in prop::collection::vec(net(), 0..5),
        se in prop::collection::vec(net(), 0..2),
        udrs in prop::collection::vec(user_route(), 0..6),
        dsts in prop::collection::vec(any::<u32>(), 1..30),
    ) {
        let mut seen = std::collections::HashSet::new();
        let routes: Vec<UserRoute> = udrs
            .iter()
            .filter(|(p, _)| seen.insert(*p))
            .enumerate()
            .map(|(i, (p, k))| {
                let (t, ip) = match k {
                    0 => (T::VirtualAppliance, Some("10.0.0.4")),
                    1 => (T::None, None),
                    2 => (T::Internet, None),
                    _ => (T::VnetLocal, None),
                };
                UserRoute::new(&format!("r{i}"), &p.to_string(), t, ip)
            })
            .collect();
        let input = SubnetRoutingInput {
            vnet_address_space: space,
            peerings: vec![peer],
            gateway_routes: gws.into_iter().map(|p| GatewayRoute {
                    address_prefix: p,
                    next_hop_ips: Vec::new(),
                    express_route: false,
                }).collect(),
            service_endpoint_routes: vec![ServiceEndpointRoute::new("Microsoft.Storage", se)],
            route_table: Some(RouteTableInput { id: "rt".into(), disable_bgp_route_propagation: false, routes }),
            service_tags: Default::default(),
            express_route_gateway: false,
        };
        let t = effective_routes(&input).unwrap();
        let mut active = std::collections::HashMap::new();
        for r in t.active_routes() {
            prop_assert!(active.insert(r.route.address_prefix, ()).is_none(), "two active routes for {}", r.route.address_prefix);
        }
        for r in t.routes() {
            prop_assert!(active.contains_key(&r.route.address_prefix) || r.state == RouteState::Invalid);
        }
        // Probe random addresses and every route's first address.
        let mut probes: Vec<IpAddr> = dsts.iter().map(|&d| IpAddr::V4(Ipv4Addr::from(d))).collect();
        probes.extend(t.routes().iter().map(|r| r.route.address_prefix.network()));
        for dst in probes {
            let want = t
                .routes()
                .iter()
                .enumerate()
                .filter(|(_, r)| r.state == RouteState::Active && r.route.address_prefix.contains(&dst))
                .max_by_key(|(_, r)| r.route.address_prefix.prefix_len())
                .map(|(i, _)| i);
            let nh = t.next_hop(dst);
            prop_assert_eq!(nh.as_ref().map(|n| n.route_index), want);
            if let Some(n) = nh {
                let selected = n.candidates.iter().filter(|c| c.outcome == netwatch_routing::CandidateOutcome::Selected).count();
                prop_assert_eq!(selected, 1);
            }
        }
    }
}
