//! Connection troubleshoot (spec §12, `NetworkWatchers_CheckConnectivity`),
//! answered from the configuration: the path a packet from a VM to a VM or
//! an address takes hop by hop (next hop at each NIC, spec §4-5), with the
//! NSG verdict at every NIC it leaves or enters (spec §1.6, §13.3), in
//! Azure's `ConnectivityInformation` shape.
//!
//! Azure sends probes from an agent in the VM; offline there are none, so
//! `probesSent` is 0, the latency fields are absent and `links` are empty.
//! `connectionStatus` says what the configuration allows:
//! - `Disconnected`: an NSG rule, a `None` route, a NIC that does not
//!   forward or a routing loop drops the request or its reply (the hop
//!   carries the issue; a reply's issue sits on the destination's hop);
//! - `Connected`: the request reaches a NIC of the loaded resources and the
//!   reply comes back to the source;
//! - `Unknown`: the request, or its reply, leaves what the resources
//!   describe (Internet, a gateway, a service endpoint, an address no NIC
//!   of the VNet or its connected peers holds).
//!
//! What a hop checks: leaving a NIC, the outbound chain (NIC then subnet
//! NSG); entering a NIC (the destination or a virtual appliance), the
//! inbound chain (subnet then NIC NSG); a virtual appliance must have IP
//! forwarding enabled unless the packet is addressed to it (Azure drops
//! packets addressed to others otherwise), and forwards the packet by its
//! own subnet's routes. The reply follows the destination's routes; NSGs
//! are stateful, so the NICs the request passed let it through, and any
//! other NIC on its way judges it as a new flow. Traffic to the source's
//! own address never leaves the guest. Not modelled: guest firewalls and
//! listening sockets (the probes' domain), and the peering setting
//! `allowForwardedTraffic`.

use std::net::IpAddr;

use netwatch_routing::NextHopType;
use netwatch_rules::{Access, Direction, Flow};
use serde::Serialize;

use super::context::{find_vm, nics_of_vm, select_nic, NicView};
use super::routes::nic_effective_routes;
use super::WatcherError;
use crate::azure::{Environment, IpConfiguration, NetworkInterface};

/// `protocol` of a connectivity check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ConnectivityProtocol {
    Tcp,
    Http,
    Https,
    Icmp,
}

impl ConnectivityProtocol {
    /// Parses `Tcp`, `Http`, `Https`, `Icmp`, case-insensitively.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "http" => Ok(Self::Http),
            "https" => Ok(Self::Https),
            "icmp" => Ok(Self::Icmp),
            _ => Err(format!("{s:?} is not Tcp, Http, Https or Icmp")),
        }
    }

    /// The destination port when none is given: 80 for Http, 443 for Https.
    fn default_port(self) -> Option<u16> {
        match self {
            Self::Http => Some(80),
            Self::Https => Some(443),
            Self::Tcp | Self::Icmp => None,
        }
    }
}

/// The first port of the dynamic range (RFC 6335 §6), the source port when
/// none is given: most rules allow any source port, and a probe's is random.
pub const DEFAULT_SOURCE_PORT: u16 = 49152;

/// Where the check goes: a VM (its primary NIC's address) or an address.
#[derive(Clone, Debug)]
pub enum ConnectivityDestination {
    VirtualMachine(String),
    Address(IpAddr),
}

/// The request (`ConnectivityParameters`), resources by name or id.
#[derive(Clone, Debug)]
pub struct ConnectivityParameters {
    pub source_vm: Option<String>,
    pub source_nic: Option<String>,
    pub source_port: Option<u16>,
    pub destination: ConnectivityDestination,
    pub destination_port: Option<u16>,
    pub protocol: ConnectivityProtocol,
    /// `preferredIPVersion`: which address of a destination VM to use
    /// (default: its primary IP configuration's).
    pub preferred_ip_version: Option<PreferredIpVersion>,
}

/// `preferredIPVersion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreferredIpVersion {
    IPv4,
    IPv6,
}

impl PreferredIpVersion {
    /// Parses `IPv4` / `IPv6`, case-insensitively.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ipv4" => Ok(Self::IPv4),
            "ipv6" => Ok(Self::IPv6),
            _ => Err(format!("{s:?} is not IPv4 or IPv6")),
        }
    }
}

/// `ConnectivityInformation`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivityInformation {
    pub hops: Vec<ConnectivityHop>,
    pub connection_status: ConnectionStatus,
    pub probes_sent: u32,
    pub probes_failed: u32,
}

/// `connectionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ConnectionStatus {
    Unknown,
    Connected,
    Disconnected,
}

/// `ConnectivityHop`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivityHop {
    /// `Source`, `VirtualAppliance`, `VirtualNetwork` (a NIC of the
    /// destination's VNet), or the next hop type that left the loaded
    /// resources (`VnetLocal`, `VNetPeering`, `Internet`,
    /// `VirtualNetworkGateway`, `VirtualNetworkServiceEndpoint`, `None`).
    #[serde(rename = "type")]
    pub hop_type: String,
    pub id: String,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub next_hop_ids: Vec<String>,
    pub previous_hop_ids: Vec<String>,
    /// `links` / `previousLinks`: Azure's per-link probe results (round
    /// trip times); empty here, where there are no probes.
    pub links: Vec<serde_json::Value>,
    pub previous_links: Vec<serde_json::Value>,
    pub issues: Vec<ConnectivityIssue>,
}

/// `ConnectivityIssue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivityIssue {
    pub origin: IssueOrigin,
    pub severity: IssueSeverity,
    #[serde(rename = "type")]
    pub issue_type: IssueType,
    /// Key/value pairs, e.g. `{"key":"RuleName","value":"UserRule_Port80"}`.
    pub context: Vec<IssueContext>,
}

/// One entry of an issue's `context`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssueContext {
    pub key: String,
    pub value: String,
}

/// `origin` of an issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IssueOrigin {
    Local,
    Inbound,
    Outbound,
}

/// `severity` of an issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IssueSeverity {
    Error,
    Warning,
}

/// `type` of an issue (the subset the configuration can show).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IssueType {
    NetworkSecurityRule,
    UserDefinedRoute,
    Platform,
}

/// Hops a path may take before it is called a loop.
const MAX_HOPS: usize = 16;

/// Runs the check.
pub fn check_connectivity(env: &Environment, p: &ConnectivityParameters) -> Result<ConnectivityInformation, WatcherError> {
    let source_nic = select_nic(env, p.source_vm.as_deref(), p.source_nic.as_deref(), None)?;
    let family = p.preferred_ip_version.map(|v| v == PreferredIpVersion::IPv6);
    let destination = match &p.destination {
        ConnectivityDestination::Address(a) => *a,
        ConnectivityDestination::VirtualMachine(vm) => {
            let vm = find_vm(env, vm)?;
            let nic = nics_of_vm(env, vm).into_iter().next().ok_or_else(|| {
                WatcherError::NotFound(format!(
                    "virtual machine {:?}: none of its network interfaces is among the loaded resources",
                    vm.name
                ))
            })?;
            let family_hint = family.map(|v6| if v6 { IpAddr::from([0u16; 8]) } else { IpAddr::from([0u8; 4]) });
            primary_configuration(nic, family_hint)
                .and_then(|c| c.private_ip_address)
                .ok_or_else(|| {
                    WatcherError::Invalid(format!(
                        "network interface {:?} has no private IP address{}",
                        nic.name,
                        match family {
                            Some(true) => " of IPv6",
                            Some(false) => " of IPv4",
                            None => "",
                        }
                    ))
                })?
        }
    };
    let source_cfg = primary_configuration(source_nic, Some(destination)).ok_or_else(|| {
        WatcherError::Invalid(format!(
            "network interface {:?} has no private IP address of {destination}'s family",
            source_nic.name
        ))
    })?;
    let source = source_cfg.private_ip_address.unwrap_or(destination);
    if p.protocol == ConnectivityProtocol::Icmp && (p.destination_port.is_some() || p.source_port.is_some()) {
        return Err(WatcherError::Invalid(
            "ICMP has no ports: leave out the source and destination ports".into(),
        ));
    }
    let destination_port = match (p.protocol, p.destination_port.or(p.protocol.default_port())) {
        (ConnectivityProtocol::Icmp, _) => 0,
        (_, Some(port)) => port,
        (proto, None) => {
            return Err(WatcherError::Invalid(format!("{proto:?} needs a destination port")));
        }
    };
    let icmp = p.protocol == ConnectivityProtocol::Icmp;
    let flow = Flow {
        protocol: match (icmp, destination.is_ipv4()) {
            (true, true) => 1,
            (true, false) => 58,
            (false, _) => 6,
        },
        source,
        source_port: if icmp { 0 } else { p.source_port.unwrap_or(DEFAULT_SOURCE_PORT) },
        destination,
        destination_port,
    };

    let mut path = Path::default();
    let first = path.push("Source", source, Some(&source_cfg.id));
    // To one of the VM's own addresses: the guest delivers it, no NIC (and
    // so no NSG or route) sees it.
    if holds(source_nic, destination) {
        return Ok(path.into_information(ConnectionStatus::Connected));
    }
    let forward = walk(env, &mut path, first, (source_nic, source_cfg), &flow, &[])?;
    let status = match forward.outcome {
        Outcome::Dropped => ConnectionStatus::Disconnected,
        Outcome::Left => ConnectionStatus::Unknown,
        Outcome::Reached(dnic, dcfg) => {
            // NSGs are stateful (spec §1.3): the reply passes the NICs the
            // request passed. Routes are not: the reply takes the
            // destination's routes, and a NIC it meets that the request did
            // not sees a new flow.
            let reply_flow = Flow {
                protocol: flow.protocol,
                source: flow.destination,
                source_port: flow.destination_port,
                destination: flow.source,
                destination_port: flow.source_port,
            };
            let mut reply_path = Path::default();
            let start = reply_path.push("Source", destination, Some(&dcfg.id));
            let reply = walk(env, &mut reply_path, start, (dnic, dcfg), &reply_flow, &forward.visited)?;
            let last = path.hops.len() - 1;
            let what = format!("the reply from {destination} to {source}");
            match reply.outcome {
                Outcome::Reached(..) => ConnectionStatus::Connected,
                Outcome::Dropped => {
                    for issue in reply_path.hops.iter().flat_map(|h| h.issues.iter()) {
                        let mut issue = issue.clone();
                        issue.context.insert(0, ctx("Reason", &what));
                        path.hops[last].issues.push(issue);
                    }
                    ConnectionStatus::Disconnected
                }
                Outcome::Left => {
                    let exit = reply_path
                        .hops
                        .last()
                        .map_or_else(String::new, |h| format!("{} {}", h.hop_type, h.address));
                    path.hops[last].issues.push(ConnectivityIssue {
                        origin: IssueOrigin::Outbound,
                        severity: IssueSeverity::Warning,
                        issue_type: IssueType::Platform,
                        context: vec![ctx("Reason", &format!("{what} leaves by {exit}, not the way the request came"))],
                    });
                    ConnectionStatus::Unknown
                }
            }
        }
    };
    Ok(path.into_information(status))
}

/// How a walk ended.
enum Outcome<'e> {
    /// At the NIC holding the destination address.
    Reached(&'e NetworkInterface, &'e IpConfiguration),
    /// Dropped; the issue is on the path's last hop.
    Dropped,
    /// Out of the loaded resources (Internet, a gateway, an address no
    /// reachable NIC holds).
    Left,
}

struct Walk<'e> {
    outcome: Outcome<'e>,
    /// Keys of the NICs the packet passed (their NSGs keep its state).
    visited: Vec<String>,
}

/// Follows `flow` from `start` (whose hop in `path` is `current`) hop by hop
/// to its destination, adding hops and issues to `path`. The NSGs of the
/// NICs in `stateful` let it pass (a reply on its request's way).
fn walk<'e>(
    env: &'e Environment,
    path: &mut Path,
    mut current: usize,
    start: (&'e NetworkInterface, &'e IpConfiguration),
    flow: &Flow,
    stateful: &[String],
) -> Result<Walk<'e>, WatcherError> {
    let destination = flow.destination;
    let key = |n: &NetworkInterface| crate::azure::id_key(&n.id);
    let mut visited = vec![key(start.0)];
    let mut at = start;
    let outcome = loop {
        let (nic, cfg) = at;
        // Leaving `nic`: its outbound chain.
        if !stateful.contains(&key(nic)) {
            if let Some(issue) = nsg_issue(env, nic, cfg, Direction::Outbound, flow)? {
                path.hops[current].issues.push(issue);
                break Outcome::Dropped;
            }
        }
        let table = nic_effective_routes(env, nic, cfg.private_ip_address)?;
        let Some(hop) = table.next_hop(destination) else {
            path.hops[current].issues.push(ConnectivityIssue {
                origin: IssueOrigin::Outbound,
                severity: IssueSeverity::Error,
                issue_type: IssueType::Platform,
                context: vec![ctx("Reason", &format!("no route to {destination}"))],
            });
            break Outcome::Dropped;
        };
        let mut route_context = vec![
            ctx("RouteSource", &format!("{:?}", hop.route.route.source)),
            ctx("AddressPrefix", &hop.route.route.address_prefix.to_string()),
        ];
        if let Some(name) = &hop.route.route.name {
            route_context.push(ctx("RouteName", name));
        }
        route_context.push(ctx("RouteTableId", &hop.route_table_id));
        match hop.next_hop_type {
            NextHopType::None => {
                let user = hop.route.route.source == netwatch_routing::RouteSource::User;
                path.hops[current].issues.push(ConnectivityIssue {
                    origin: IssueOrigin::Outbound,
                    severity: IssueSeverity::Error,
                    issue_type: if user { IssueType::UserDefinedRoute } else { IssueType::Platform },
                    context: route_context,
                });
                break Outcome::Dropped;
            }
            NextHopType::VirtualAppliance => {
                let Some(appliance) = hop.next_hop_ip else {
                    break Outcome::Left;
                };
                // The appliance must be in this VNet or a connected peer
                // (spec §5.3); one outside what is loaded is beyond us.
                let Some((anic, acfg)) = reachable_holder(env, appliance, nic) else {
                    path.link(current, "VirtualAppliance", appliance, None);
                    break Outcome::Left;
                };
                current = path.link(current, "VirtualAppliance", appliance, Some(&acfg.id));
                // Addressed to the appliance itself: delivered, not forwarded.
                let delivered = holds(anic, destination);
                if !delivered && (visited.contains(&key(anic)) || path.hops.len() > MAX_HOPS) {
                    path.hops[current].issues.push(ConnectivityIssue {
                        origin: IssueOrigin::Outbound,
                        severity: IssueSeverity::Error,
                        issue_type: IssueType::UserDefinedRoute,
                        context: [vec![ctx("Reason", "routing loop")], route_context].concat(),
                    });
                    break Outcome::Dropped;
                }
                visited.push(key(anic));
                if !stateful.contains(&key(anic)) {
                    if let Some(issue) = nsg_issue(env, anic, acfg, Direction::Inbound, flow)? {
                        path.hops[current].issues.push(issue);
                        break Outcome::Dropped;
                    }
                }
                if delivered {
                    break Outcome::Reached(anic, acfg);
                }
                if !anic.enable_ip_forwarding {
                    path.hops[current].issues.push(ConnectivityIssue {
                        origin: IssueOrigin::Inbound,
                        severity: IssueSeverity::Error,
                        issue_type: IssueType::Platform,
                        context: vec![
                            ctx("Reason", "IP forwarding is disabled on the virtual appliance's network interface"),
                            ctx("NetworkInterfaceId", &anic.id),
                        ],
                    });
                    break Outcome::Dropped;
                }
                at = (anic, acfg);
            }
            NextHopType::VnetLocal | NextHopType::VNetPeering => {
                // Delivered in this VNet or a connected peer: to the NIC
                // that holds the address there, if one is loaded.
                let Some((dnic, dcfg)) = reachable_holder(env, destination, nic) else {
                    path.link(current, hop.next_hop_type.as_str(), destination, None);
                    break Outcome::Left;
                };
                current = path.link(current, "VirtualNetwork", destination, Some(&dcfg.id));
                visited.push(key(dnic));
                if !stateful.contains(&key(dnic)) {
                    if let Some(issue) = nsg_issue(env, dnic, dcfg, Direction::Inbound, flow)? {
                        path.hops[current].issues.push(issue);
                        break Outcome::Dropped;
                    }
                }
                break Outcome::Reached(dnic, dcfg);
            }
            other => {
                // Internet, a gateway, a service endpoint: beyond the
                // resources. A user route to the gateway has no address of
                // its own: the gateway's is that of the system routes.
                let address = hop.next_hop_ip.or_else(|| {
                    table
                        .routes()
                        .iter()
                        .filter(|r| r.route.next_hop_type == other)
                        .find_map(|r| r.route.next_hop_ip())
                });
                path.link(current, other.as_str(), address.unwrap_or(destination), None);
                break Outcome::Left;
            }
        }
    };
    Ok(Walk { outcome, visited })
}

/// Whether `ip` is one of `nic`'s private addresses.
fn holds(nic: &NetworkInterface, ip: IpAddr) -> bool {
    nic.ip_configurations.iter().any(|c| c.private_ip_address == Some(ip))
}

fn ctx(key: &str, value: &str) -> IssueContext {
    IssueContext {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// The NIC's primary IP configuration, or with `family_of`, its first of
/// that address's family (primary first).
fn primary_configuration(nic: &NetworkInterface, family_of: Option<IpAddr>) -> Option<&IpConfiguration> {
    let fits = |c: &&IpConfiguration| match (c.private_ip_address, family_of) {
        (Some(a), Some(f)) => a.is_ipv4() == f.is_ipv4(),
        (Some(_), None) => true,
        (None, _) => false,
    };
    nic.ip_configurations
        .iter()
        .filter(|c| c.primary)
        .find(fits)
        .or_else(|| nic.ip_configurations.iter().find(fits))
}

/// The NIC and configuration holding private address `ip` in `from`'s
/// VNet or a VNet peered with it in state Connected: where a packet that
/// leaves `from` by a VNet or peering route (or to an appliance) can go.
fn reachable_holder<'e>(env: &'e Environment, ip: IpAddr, from: &NetworkInterface) -> Option<(&'e NetworkInterface, &'e IpConfiguration)> {
    let key = crate::azure::id_key;
    let vnet_of = |c: &IpConfiguration| c.subnet_id.as_deref().and_then(|s| env.subnet(s)).map(|(v, _)| v);
    let home = from.ip_configurations.iter().find_map(vnet_of)?;
    let reachable = |v: &crate::azure::VirtualNetwork| {
        key(&v.id) == key(&home.id)
            || home
                .peerings
                .iter()
                .any(|p| p.peering_state.eq_ignore_ascii_case("Connected") && key(&p.remote_virtual_network_id) == key(&v.id))
    };
    env.network_interfaces
        .iter()
        .flat_map(|n| n.ip_configurations.iter().map(move |c| (n, c)))
        .find(|(_, c)| c.private_ip_address == Some(ip) && vnet_of(c).is_some_and(reachable))
}

/// The issue when `nic`'s chain in `direction` denies `flow`.
fn nsg_issue(
    env: &Environment,
    nic: &NetworkInterface,
    cfg: &IpConfiguration,
    direction: Direction,
    flow: &Flow,
) -> Result<Option<ConnectivityIssue>, WatcherError> {
    let view = NicView::new(env, nic, cfg)?;
    let chain = view.compile(direction)?;
    let decision = chain.decide(&flow.key());
    if decision.access == Access::Allow {
        return Ok(None);
    }
    let mut context = Vec::new();
    if let Some(v) = decision.decided_by {
        if let Some(rule) = v.rule_index.and_then(|i| chain.rule(v.chain_index, i)) {
            context.push(ctx("RuleName", &rule.flow_log_name()));
        }
        if let Some(link) = chain.links.get(v.chain_index) {
            context.push(ctx("NetworkSecurityGroupId", &link.nsg.id));
            context.push(ctx("AppliedTo", view.applied_to(link.attachment)));
        }
    }
    Ok(Some(ConnectivityIssue {
        origin: match direction {
            Direction::Inbound => IssueOrigin::Inbound,
            Direction::Outbound => IssueOrigin::Outbound,
        },
        severity: IssueSeverity::Error,
        issue_type: IssueType::NetworkSecurityRule,
        context,
    }))
}

/// Hops under construction, linked both ways.
#[derive(Default)]
struct Path {
    hops: Vec<ConnectivityHop>,
}

impl Path {
    fn into_information(self, connection_status: ConnectionStatus) -> ConnectivityInformation {
        ConnectivityInformation {
            hops: self.hops,
            connection_status,
            probes_sent: 0,
            probes_failed: 0,
        }
    }

    fn push(&mut self, hop_type: &str, address: IpAddr, resource_id: Option<&str>) -> usize {
        let index = self.hops.len();
        self.hops.push(ConnectivityHop {
            hop_type: hop_type.to_string(),
            id: hop_id(index, address, resource_id),
            address: address.to_string(),
            resource_id: resource_id.map(str::to_string),
            next_hop_ids: Vec::new(),
            previous_hop_ids: Vec::new(),
            links: Vec::new(),
            previous_links: Vec::new(),
            issues: Vec::new(),
        });
        index
    }

    /// A new hop after `from`.
    fn link(&mut self, from: usize, hop_type: &str, address: IpAddr, resource_id: Option<&str>) -> usize {
        let to = self.push(hop_type, address, resource_id);
        let (from_id, to_id) = (self.hops[from].id.clone(), self.hops[to].id.clone());
        self.hops[from].next_hop_ids.push(to_id);
        self.hops[to].previous_hop_ids.push(from_id);
        to
    }
}

/// A hop id in Azure's GUID shape, the same for the same path in every run
/// (FNV-1a over the hop's position, address and resource).
fn hop_id(index: usize, address: IpAddr, resource_id: Option<&str>) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    let text = format!("{index}|{address}|{}", resource_id.unwrap_or(""));
    for b in text.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let x = format!("{h:032x}");
    format!("{}-{}-{}-{}-{}", &x[0..8], &x[8..12], &x[12..16], &x[16..20], &x[20..32])
}
