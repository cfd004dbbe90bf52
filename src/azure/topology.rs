//! How loaded resources relate: gateways of a VNet, the on-premises and
//! VNet-to-VNet prefixes behind them, members of application security groups.

use std::collections::HashMap;
use std::net::IpAddr;

use netwatch_routing::{RouteDestination, RouteError};
use netwatch_rules::{AddrSet, IpPrefix};

use super::{id_key, parent_id, Environment, Location, Subnet, VirtualNetwork, VirtualNetworkGateway};

/// A connected peering whose remote address space is unknown: no
/// `remoteAddressSpace`, and the remote VNet is not loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{at}: peering {peering:?} is Connected, but the address space of its remote virtual network {remote:?} is unknown \
     (load that virtual network with --resources, or give the peering's remoteAddressSpace.addressPrefixes)"
)]
pub struct UnknownPeerAddressSpace {
    /// Where the peering is written.
    pub at: Location,
    /// The peering's name.
    pub peering: String,
    /// `remoteVirtualNetwork.id`.
    pub remote: String,
}

/// Why a subnet's `VirtualNetwork` tag (spec Decisions 1) cannot be told.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VirtualNetworkTagError {
    /// A connected peer's address space is unknown.
    #[error(transparent)]
    UnknownPeerAddressSpace(#[from] UnknownPeerAddressSpace),
    /// A user route of the subnet's route table names a service tag that
    /// is not loaded: its prefixes belong to the tag.
    #[error("{at}: {source}")]
    RouteServiceTag {
        /// Where the route's `addressPrefix` is written.
        at: Location,
        /// The routing crate's error about it.
        source: Box<RouteError>,
    },
}

impl Environment {
    /// Gateways in a VNet's own `GatewaySubnet`.
    pub fn gateways_in(&self, vnet: &VirtualNetwork) -> Vec<&VirtualNetworkGateway> {
        let key = id_key(&vnet.id);
        self.virtual_network_gateways
            .iter()
            .filter(|g| g.virtual_network_id.as_deref().is_some_and(|v| id_key(v) == key))
            .collect()
    }

    /// Gateways whose routes reach a VNet: its own, and those of peers it
    /// uses through `useRemoteGateways` (spec §5.2) — which takes the
    /// peer's consent: its peering back must allow gateway transit, as
    /// Azure requires before it accepts `useRemoteGateways`.
    pub fn gateways_serving(&self, vnet: &VirtualNetwork) -> Vec<&VirtualNetworkGateway> {
        let mut out = self.gateways_in(vnet);
        let me = id_key(&vnet.id);
        for p in vnet.peerings.iter().filter(|p| p.is_connected() && p.use_remote_gateways) {
            let Some(remote) = self.vnet(&p.remote_virtual_network_id) else {
                continue;
            };
            let transit = remote
                .peerings
                .iter()
                .any(|b| b.is_connected() && b.allow_gateway_transit && id_key(&b.remote_virtual_network_id) == me);
            if transit {
                out.extend(self.gateways_in(remote));
            } else {
                tracing::warn!(
                    vnet = %vnet.name, peer = %remote.name,
                    "useRemoteGateways without allowGatewayTransit on the peer's side: its gateway's routes are not used"
                );
            }
        }
        out
    }

    /// Address prefixes reachable through a gateway's connected connections:
    /// local network gateway address spaces (site-to-site) and the address
    /// space of the VNet behind the other gateway (VNet-to-VNet).
    pub fn prefixes_behind(&self, gateway: &VirtualNetworkGateway) -> Vec<IpPrefix> {
        let gk = id_key(&gateway.id);
        let mut out = Vec::new();
        for c in self.connections.iter().filter(|c| c.is_connected()) {
            let g1 = c.virtual_network_gateway1_id.as_deref().map(id_key);
            let g2 = c.virtual_network_gateway2_id.as_deref().map(id_key);
            let other = if g1.as_deref() == Some(gk.as_str()) {
                if let Some(lng) = c.local_network_gateway2_id.as_deref().and_then(|l| self.local_network_gateway(l)) {
                    out.extend(lng.address_prefixes.iter().copied());
                }
                c.virtual_network_gateway2_id.as_deref()
            } else if g2.as_deref() == Some(gk.as_str()) {
                c.virtual_network_gateway1_id.as_deref()
            } else {
                None
            };
            if let Some(vnet) = other
                .and_then(|o| self.virtual_network_gateway(o))
                .and_then(|g| g.virtual_network_id.as_deref())
                .and_then(|v| self.vnet(v))
            {
                out.extend(vnet.address_space.iter().copied());
            }
        }
        out
    }

    /// The address space of each connected peer of a VNet: the peering's
    /// `remoteAddressSpace`, else the loaded remote VNet's. An error when it
    /// has neither: the peer's peering routes (spec §5.2) and its part of
    /// the `VirtualNetwork` tag (spec Decisions 1) would be left out
    /// without a word.
    pub fn peered_address_spaces(&self, vnet: &VirtualNetwork) -> Result<Vec<(String, Vec<IpPrefix>)>, UnknownPeerAddressSpace> {
        vnet.peerings
            .iter()
            .filter(|p| p.is_connected())
            .map(|p| {
                let space = if p.remote_address_space.is_empty() {
                    self.vnet(&p.remote_virtual_network_id)
                        .map(|v| v.address_space.clone())
                        .ok_or_else(|| UnknownPeerAddressSpace {
                            at: p.at.clone(),
                            peering: p.name.clone(),
                            remote: p.remote_virtual_network_id.clone(),
                        })?
                } else {
                    p.remote_address_space.clone()
                };
                Ok((p.remote_virtual_network_id.clone(), space))
            })
            .collect()
    }

    /// The `VirtualNetwork` tag for a subnet (spec Decisions 1): the VNet's
    /// ranges, connected peers' ranges, prefixes behind the gateways that
    /// serve the VNet, 168.63.129.16/32, and the prefixes of the user routes
    /// in the subnet's route table.
    pub fn virtual_network_tag(&self, vnet: &VirtualNetwork, subnet: &Subnet) -> Result<AddrSet, VirtualNetworkTagError> {
        let mut p: Vec<IpPrefix> = vnet.address_space.clone();
        for (_, space) in self.peered_address_spaces(vnet)? {
            p.extend(space);
        }
        for g in self.gateways_serving(vnet) {
            p.extend(self.prefixes_behind(g));
        }
        if let Ok(host) = netwatch_rules::tags::AZURE_HOST_IP.parse::<IpPrefix>() {
            p.push(host);
        }
        // The route table was checked when loaded: each addressPrefix is a
        // CIDR or a service tag name, which must be known here as it must
        // be for the routes themselves (spec §5.3).
        if let Some(rt) = subnet.route_table_id.as_deref().and_then(|id| self.route_table(id)) {
            for (index, r) in rt.routes.iter().enumerate() {
                match &r.destination {
                    RouteDestination::Prefix(n) => p.extend(IpPrefix::new(n.addr(), n.prefix_len())),
                    RouteDestination::ServiceTag(tag) => {
                        let Some(set) = self.service_tags.as_ref().and_then(|t| t.get(tag)) else {
                            let source = RouteError::UnknownServiceTag {
                                route_table: rt.id.clone(),
                                index,
                                route: r.name.clone(),
                                tag: tag.clone(),
                            };
                            return Err(VirtualNetworkTagError::RouteServiceTag {
                                at: rt.location_of(&source).clone(),
                                source: Box::new(source),
                            });
                        };
                        p.extend(set.to_prefixes());
                    }
                }
            }
        }
        Ok(AddrSet::from_prefixes(p))
    }

    /// Private IPs of the member NICs of every application security group,
    /// keyed by lower-case ASG id, for the rules of a NIC in `vnet`: only
    /// members in `vnet` count. An ASG's NICs all sit in one VNet (spec
    /// §1.7), so a rule's group names NICs of the VNet it guards; a NIC of
    /// another VNet (peered or not, its address perhaps the same as a NIC's
    /// here) is not one of them. Loaded ASGs without members there map to
    /// the empty set.
    pub fn application_security_group_members(&self, vnet: &VirtualNetwork) -> HashMap<String, AddrSet> {
        let host = |ip: IpAddr| IpPrefix::new(ip, if ip.is_ipv4() { 32 } else { 128 });
        let here = id_key(&vnet.id);
        let mut ips: HashMap<String, Vec<IpPrefix>> = HashMap::new();
        for a in &self.application_security_groups {
            ips.entry(id_key(&a.id)).or_default();
        }
        for c in self.network_interfaces.iter().flat_map(|n| &n.ip_configurations) {
            let in_vnet = c.subnet_id.as_deref().is_some_and(|s| id_key(parent_id(s)) == here);
            for a in &c.application_security_group_ids {
                let e = ips.entry(id_key(a)).or_default();
                if let Some(p) = c.private_ip_address.filter(|_| in_vnet).and_then(host) {
                    e.push(p);
                }
            }
        }
        ips.into_iter().map(|(k, v)| (k, AddrSet::from_prefixes(v))).collect()
    }
}
