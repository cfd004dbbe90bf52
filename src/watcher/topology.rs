//! Network Watcher's topology (spec §9, `NetworkWatchers_GetTopology`):
//! the resources of a resource group, a virtual network or a subnet, each
//! with its associations: a VNet `Contains` its subnets, a VM `Contains`
//! its NICs; a subnet is `Associated` with its NSG and route table, a NIC
//! with its subnet and NSG.

use std::collections::BTreeSet;

use serde::Serialize;

use super::context::find_vnet;
use super::WatcherError;
use crate::azure::{id_key, id_part, parent_id, Environment, NetworkInterface, Subnet};

/// `TopologyParameters`: what to draw. At least one target.
#[derive(Clone, Debug, Default)]
pub struct TopologyParameters {
    /// `targetResourceGroupName`: every loaded resource of the group.
    pub target_resource_group_name: Option<String>,
    /// `targetVirtualNetwork`: a VNet (name or id), its subnets and what is in them.
    pub target_virtual_network: Option<String>,
    /// `targetSubnet`: a subnet (id, or `vnet/subnet`) and what is in it.
    pub target_subnet: Option<String>,
}

/// `Topology`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    /// A GUID derived from the target and the resources drawn (Azure's is
    /// random): the same input gives the same id.
    pub id: String,
    pub created_date_time: String,
    pub last_modified: String,
    pub resources: Vec<TopologyResource>,
}

/// `TopologyResource`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TopologyResource {
    pub name: String,
    pub id: String,
    pub location: Option<String>,
    pub associations: Vec<TopologyAssociation>,
}

/// `TopologyAssociation`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TopologyAssociation {
    pub name: String,
    pub resource_id: String,
    pub association_type: AssociationType,
}

/// `AssociationType`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum AssociationType {
    Associated,
    Contains,
}

fn assoc(id: &str, t: AssociationType) -> TopologyAssociation {
    TopologyAssociation {
        name: crate::azure::name_of(id).to_string(),
        resource_id: id.to_string(),
        association_type: t,
    }
}

/// What to draw, as resource ids (lower-case keys).
#[derive(Default)]
struct Selection {
    vnets: BTreeSet<String>,
    subnets: BTreeSet<String>,
    nics: BTreeSet<String>,
}

/// The topology of the target (spec §9).
pub fn topology(env: &Environment, p: &TopologyParameters, now: std::time::SystemTime) -> Result<Topology, WatcherError> {
    let mut sel = Selection::default();
    let whole_group = p.target_resource_group_name.as_deref().map(str::trim);
    if let Some(v) = &p.target_virtual_network {
        let vnet = find_vnet(env, v)?;
        sel.vnets.insert(id_key(&vnet.id));
        sel.subnets.extend(vnet.subnets.iter().map(|s| id_key(&s.id)));
    }
    if let Some(s) = &p.target_subnet {
        let subnet = find_subnet(env, s)?;
        sel.subnets.insert(id_key(&subnet.id));
    }
    if whole_group.is_none() && sel.vnets.is_empty() && sel.subnets.is_empty() {
        return Err(WatcherError::Invalid(
            "give the target: a resource group, a virtual network or a subnet".into(),
        ));
    }
    let in_group = |id: &str| whole_group.is_some_and(|g| id_part(id, "resourceGroups").is_some_and(|r| r.eq_ignore_ascii_case(g)));
    // A group none of the loaded resources belongs to is a mistake (Azure
    // answers 404), not an empty topology.
    if let Some(g) = whole_group {
        let ids = env
            .virtual_networks
            .iter()
            .map(|x| x.id.as_str())
            .chain(env.network_interfaces.iter().map(|x| x.id.as_str()))
            .chain(env.virtual_machines.iter().map(|x| x.id.as_str()))
            .chain(env.network_security_groups.iter().map(|x| x.id.as_str()))
            .chain(env.route_tables.iter().map(|x| x.id.as_str()))
            .chain(env.virtual_network_gateways.iter().map(|x| x.id.as_str()))
            .chain(env.connections.iter().map(|x| x.id.as_str()))
            .chain(env.local_network_gateways.iter().map(|x| x.id.as_str()))
            .chain(env.application_security_groups.iter().map(|x| x.id.as_str()));
        let mut groups: BTreeSet<String> = BTreeSet::new();
        let mut found = false;
        for id in ids {
            found |= in_group(id);
            groups.extend(id_part(id, "resourceGroups").map(str::to_string));
        }
        if !found {
            return Err(WatcherError::NotFound(format!(
                "no loaded resource is in resource group {g:?} (groups: {})",
                groups.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    // A resource group takes its own VNets whole (their subnets are theirs).
    for v in &env.virtual_networks {
        if in_group(&v.id) {
            sel.vnets.insert(id_key(&v.id));
            sel.subnets.extend(v.subnets.iter().map(|s| id_key(&s.id)));
        }
    }
    // NICs: those in the chosen subnets, and a group's own.
    for n in &env.network_interfaces {
        let in_subnet = n
            .ip_configurations
            .iter()
            .any(|c| c.subnet_id.as_deref().is_some_and(|s| sel.subnets.contains(&id_key(s))));
        if in_subnet || in_group(&n.id) {
            sel.nics.insert(id_key(&n.id));
        }
    }

    let mut resources: Vec<TopologyResource> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut push = |r: TopologyResource, resources: &mut Vec<TopologyResource>| {
        if seen.insert(id_key(&r.id)) {
            resources.push(r);
        }
    };
    // Each VNet drawn, then its subnets drawn (a subnet target's alone).
    for v in &env.virtual_networks {
        let subnets: Vec<&Subnet> = v.subnets.iter().filter(|s| sel.subnets.contains(&id_key(&s.id))).collect();
        if sel.vnets.contains(&id_key(&v.id)) {
            push(
                TopologyResource {
                    name: v.name.clone(),
                    id: v.id.clone(),
                    location: v.location.clone(),
                    associations: v.subnets.iter().map(|s| assoc(&s.id, AssociationType::Contains)).collect(),
                },
                &mut resources,
            );
        }
        for s in subnets {
            let associations = [s.network_security_group_id.as_deref(), s.route_table_id.as_deref()]
                .into_iter()
                .flatten()
                .map(|id| assoc(id, AssociationType::Associated))
                .collect();
            push(
                TopologyResource {
                    name: s.name.clone(),
                    id: s.id.clone(),
                    location: v.location.clone(),
                    associations,
                },
                &mut resources,
            );
        }
    }
    let nics: Vec<&NetworkInterface> = env
        .network_interfaces
        .iter()
        .filter(|n| sel.nics.contains(&id_key(&n.id)))
        .collect();
    // VMs of the drawn NICs (and a group's own), each containing its NICs.
    for vm in &env.virtual_machines {
        let own: Vec<&str> = nics
            .iter()
            .filter(|n| {
                n.virtual_machine_id.as_deref().is_some_and(|v| id_key(v) == id_key(&vm.id))
                    || vm.network_interfaces.iter().any(|(id, _)| id_key(id) == id_key(&n.id))
            })
            .map(|n| n.id.as_str())
            .collect();
        if own.is_empty() && !in_group(&vm.id) {
            continue;
        }
        push(
            TopologyResource {
                name: vm.name.clone(),
                id: vm.id.clone(),
                location: vm.location.clone(),
                associations: own.iter().map(|id| assoc(id, AssociationType::Contains)).collect(),
            },
            &mut resources,
        );
    }
    for n in &nics {
        let mut associations: Vec<TopologyAssociation> = Vec::new();
        for c in &n.ip_configurations {
            if let Some(s) = &c.subnet_id {
                if !associations.iter().any(|a| id_key(&a.resource_id) == id_key(s)) {
                    associations.push(assoc(s, AssociationType::Associated));
                }
            }
        }
        if let Some(g) = &n.network_security_group_id {
            associations.push(assoc(g, AssociationType::Associated));
        }
        let location = n.location.clone().or_else(|| {
            n.ip_configurations
                .iter()
                .find_map(|c| c.subnet_id.as_deref())
                .and_then(|s| env.vnet(parent_id(s)))
                .and_then(|v| v.location.clone())
        });
        push(
            TopologyResource {
                name: n.name.clone(),
                id: n.id.clone(),
                location,
                associations,
            },
            &mut resources,
        );
    }
    // The NSGs and route tables the drawn resources are associated with,
    // and a group's own; they have no associations of their own.
    let linked: BTreeSet<String> = resources
        .iter()
        .flat_map(|r| r.associations.iter().map(|a| id_key(&a.resource_id)))
        .collect();
    for g in &env.network_security_groups {
        if linked.contains(&id_key(&g.id)) || in_group(&g.id) {
            push(
                TopologyResource {
                    name: g.name.clone(),
                    id: g.id.clone(),
                    location: g.location.clone(),
                    associations: Vec::new(),
                },
                &mut resources,
            );
        }
    }
    for t in &env.route_tables {
        if linked.contains(&id_key(&t.id)) || in_group(&t.id) {
            push(
                TopologyResource {
                    name: t.name.clone(),
                    id: t.id.clone(),
                    location: t.location.clone(),
                    associations: Vec::new(),
                },
                &mut resources,
            );
        }
    }
    // Gateways of the drawn VNets (and a group's own), associated with
    // their GatewaySubnet; the connections of drawn gateways (and a
    // group's own), associated with their gateways; the local network
    // gateways those connections name (and a group's own); a group's
    // application security groups.
    let mut drawn: BTreeSet<String> = resources.iter().map(|r| id_key(&r.id)).collect();
    for g in &env.virtual_network_gateways {
        let vnet = g.virtual_network_id.as_deref();
        if !(in_group(&g.id) || vnet.is_some_and(|v| sel.vnets.contains(&id_key(v)))) {
            let gateway_subnet = vnet.map(|v| id_key(&format!("{v}/subnets/GatewaySubnet")));
            if !gateway_subnet.is_some_and(|s| sel.subnets.contains(&s)) {
                continue;
            }
        }
        let vnet = vnet.and_then(|v| env.vnet(v));
        let associations = vnet
            .and_then(|v| v.subnets.iter().find(|s| s.name.eq_ignore_ascii_case("GatewaySubnet")))
            .map(|s| vec![assoc(&s.id, AssociationType::Associated)])
            .unwrap_or_default();
        drawn.insert(id_key(&g.id));
        push(
            TopologyResource {
                name: g.name.clone(),
                id: g.id.clone(),
                location: g.location.clone().or_else(|| vnet.and_then(|v| v.location.clone())),
                associations,
            },
            &mut resources,
        );
    }
    let mut named_lngs: BTreeSet<String> = BTreeSet::new();
    for c in &env.connections {
        let ends = [c.virtual_network_gateway1_id.as_deref(), c.virtual_network_gateway2_id.as_deref()];
        if !(in_group(&c.id) || ends.iter().flatten().any(|g| drawn.contains(&id_key(g)))) {
            continue;
        }
        let associations = ends
            .into_iter()
            .chain([c.local_network_gateway2_id.as_deref()])
            .flatten()
            .map(|id| assoc(id, AssociationType::Associated))
            .collect();
        named_lngs.extend(c.local_network_gateway2_id.as_deref().map(id_key));
        push(
            TopologyResource {
                name: c.name.clone(),
                id: c.id.clone(),
                location: c.location.clone(),
                associations,
            },
            &mut resources,
        );
    }
    for l in &env.local_network_gateways {
        if in_group(&l.id) || named_lngs.contains(&id_key(&l.id)) {
            push(
                TopologyResource {
                    name: l.name.clone(),
                    id: l.id.clone(),
                    location: l.location.clone(),
                    associations: Vec::new(),
                },
                &mut resources,
            );
        }
    }
    for a in &env.application_security_groups {
        if in_group(&a.id) {
            push(
                TopologyResource {
                    name: a.name.clone(),
                    id: a.id.clone(),
                    location: a.location.clone(),
                    associations: Vec::new(),
                },
                &mut resources,
            );
        }
    }
    let ns = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let time = netwatch_flowlogs::time::format_rfc3339_7(ns);
    Ok(Topology {
        id: derived_guid(p, &resources),
        created_date_time: time.clone(),
        last_modified: time,
        resources,
    })
}

/// A subnet by id, or `vnet/subnet` (names or the VNet's id).
fn find_subnet<'e>(env: &'e Environment, key: &str) -> Result<&'e Subnet, WatcherError> {
    if let Some((_, s)) = env.subnet(key) {
        return Ok(s);
    }
    let (v, s) = key
        .rsplit_once('/')
        .ok_or_else(|| WatcherError::Invalid(format!("subnet {key:?}: give its resource id, or VNET/SUBNET")))?;
    let v = v.trim_end_matches("/subnets");
    let vnet = find_vnet(env, v)?;
    vnet.subnets.iter().find(|x| x.name.eq_ignore_ascii_case(s)).ok_or_else(|| {
        let known: Vec<&str> = vnet.subnets.iter().map(|x| x.name.as_str()).collect();
        WatcherError::NotFound(format!(
            "no subnet {s:?} in virtual network {:?} (known: {})",
            vnet.name,
            known.join(", ")
        ))
    })
}

/// A GUID-shaped id from the target and the resources drawn (FNV-1a over
/// both, twice with different seeds).
fn derived_guid(p: &TopologyParameters, resources: &[TopologyResource]) -> String {
    let mut text = format!(
        "{:?}|{:?}|{:?}",
        p.target_resource_group_name, p.target_virtual_network, p.target_subnet
    );
    for r in resources {
        text.push('|');
        text.push_str(&id_key(&r.id));
    }
    let fnv = |seed: u64| {
        text.bytes()
            .fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4));
    let v = (u128::from(a) << 64) | u128::from(b);
    let s = format!("{v:032x}");
    format!("{}-{}-{}-{}-{}", &s[0..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
}
