//! Connection troubleshoot (spec §12) over the hub-and-spoke environment:
//! the path hop by hop through the hub firewall, each way a packet is
//! dropped (outbound NSG, inbound NSG at the destination's subnet, a user
//! `None` route in IPv4 and IPv6, the system `None` route of an unpeered
//! private range, an appliance without IP forwarding), the paths that leave
//! the resources (Internet, VPN gateway), and the answer's shape: hop ids
//! linked both ways, the same on every run, and every NSG issue the verdict
//! IP flow verify gives for the same flow.

mod common;

use std::net::IpAddr;
use std::process::Command;

use netwatch::watcher::connectivity::{
    check_connectivity, ConnectionStatus, ConnectivityDestination, ConnectivityInformation, ConnectivityParameters, ConnectivityProtocol,
    IssueOrigin, IssueSeverity, IssueType, PreferredIpVersion, DEFAULT_SOURCE_PORT,
};
use netwatch::watcher::{ip_flow_verify, IpFlowProtocol, IpFlowVerifyParameters};
use netwatch::Environment;
use netwatch_rules::{Access, Direction};

fn params(
    source_vm: &str,
    destination: ConnectivityDestination,
    port: Option<u16>,
    protocol: ConnectivityProtocol,
) -> ConnectivityParameters {
    ConnectivityParameters {
        source_vm: Some(source_vm.into()),
        source_nic: None,
        source_port: None,
        destination,
        destination_port: port,
        protocol,
        preferred_ip_version: None,
    }
}

fn to_vm(source_vm: &str, vm: &str, port: u16) -> ConnectivityInformation {
    vm_to_vm(&common::rest_env(), source_vm, vm, port)
}

fn to_address(env: &Environment, source_vm: &str, ip: &str, port: Option<u16>, protocol: ConnectivityProtocol) -> ConnectivityInformation {
    let ip: IpAddr = ip.parse().unwrap();
    check_connectivity(env, &params(source_vm, ConnectivityDestination::Address(ip), port, protocol)).expect("connectivity check")
}

/// (type, address, NIC name of the hop's resource)
fn hops(info: &ConnectivityInformation) -> Vec<(String, String, Option<String>)> {
    info.hops
        .iter()
        .map(|h| {
            let nic = h
                .resource_id
                .as_deref()
                .and_then(|id| netwatch::azure::id_part(id, "networkInterfaces"))
                .map(str::to_string);
            (h.hop_type.clone(), h.address.clone(), nic)
        })
        .collect()
}

fn h(t: &str, a: &str, nic: Option<&str>) -> (String, String, Option<String>) {
    (t.into(), a.into(), nic.map(str::to_string))
}

fn context(info: &ConnectivityInformation, hop: usize, key: &str) -> Option<String> {
    info.hops[hop]
        .issues
        .iter()
        .flat_map(|i| &i.context)
        .find(|c| c.key == key)
        .map(|c| c.value.clone())
}

/// Hops other than the last have no issue; the last has exactly `n`.
fn only_last_has_issues(info: &ConnectivityInformation, n: usize) {
    let last = info.hops.len() - 1;
    for (i, hop) in info.hops.iter().enumerate() {
        let want = if i == last { n } else { 0 };
        assert_eq!(hop.issues.len(), want, "hop {i} ({}) issues: {:?}", hop.hop_type, hop.issues);
    }
}

#[test]
fn spoke_to_spoke_through_the_hub_firewall() {
    let info = to_vm("vm-web1", "vm-app1", 8080);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.1.1.4", Some("nic-web1")),
            h("VirtualAppliance", "10.0.1.4", Some("nic-fw")),
            h("VirtualNetwork", "10.2.1.4", Some("nic-app1")),
        ]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Connected);
    only_last_has_issues(&info, 0);
    assert_eq!(info.probes_sent, 0);
    // Linked both ways, ids unique.
    for w in info.hops.windows(2) {
        assert_eq!(w[0].next_hop_ids, vec![w[1].id.clone()]);
        assert_eq!(w[1].previous_hop_ids, vec![w[0].id.clone()]);
        assert_ne!(w[0].id, w[1].id);
    }
    assert!(info.hops[0].previous_hop_ids.is_empty() && info.hops[2].next_hop_ids.is_empty());
    // The same ids on every run (no random GUIDs), in the GUID shape.
    let again = to_vm("vm-web1", "vm-app1", 8080);
    let ids = |i: &ConnectivityInformation| i.hops.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&info), ids(&again));
    let parts: Vec<usize> = info.hops[0].id.split('-').map(str::len).collect();
    assert_eq!(parts, vec![8, 4, 4, 4, 12]);
}

#[test]
fn same_subnet_and_peered_hub_are_direct() {
    let info = to_vm("vm-web1", "vm-web2", 80);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.1.1.4", Some("nic-web1")),
            h("VirtualNetwork", "10.1.1.5", Some("nic-web2"))
        ]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Connected);
    let info = to_vm("vm-jump", "vm-web1", 22);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.0.2.4", Some("nic-jump")),
            h("VirtualNetwork", "10.1.1.4", Some("nic-web1"))
        ]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Connected);
}

#[test]
fn outbound_rule_of_the_source_nic_blocks() {
    let info = to_vm("vm-app1", "vm-db1", 22);
    assert_eq!(hops(&info), vec![h("Source", "10.2.1.4", Some("nic-app1"))]);
    assert_eq!(info.connection_status, ConnectionStatus::Disconnected);
    only_last_has_issues(&info, 1);
    let issue = &info.hops[0].issues[0];
    assert_eq!(
        (issue.origin, issue.severity, issue.issue_type),
        (IssueOrigin::Outbound, IssueSeverity::Error, IssueType::NetworkSecurityRule)
    );
    assert_eq!(context(&info, 0, "RuleName").as_deref(), Some("UserRule_Deny-Db-Subnet-Out"));
    // The same port on SQL passes.
    assert_eq!(to_vm("vm-app1", "vm-db1", 1433).connection_status, ConnectionStatus::Connected);
}

#[test]
fn inbound_rule_of_the_destination_subnet_blocks() {
    let info = to_vm("vm-jump", "vm-db1", 22);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.0.2.4", Some("nic-jump")),
            h("VirtualNetwork", "10.2.2.4", Some("nic-db1"))
        ]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Disconnected);
    only_last_has_issues(&info, 1);
    assert_eq!(info.hops[1].issues[0].origin, IssueOrigin::Inbound);
    assert_eq!(context(&info, 1, "RuleName").as_deref(), Some("UserRule_Deny-VNet-In"));
    assert!(context(&info, 1, "AppliedTo").is_some_and(|s| s.ends_with("/subnets/snet-db")));

    // Through the firewall the source is web1, which is not in vnet-app's
    // VirtualNetwork tag (vnet-web is not peered with it): the default
    // rule denies, at the end of a three-hop path.
    let info = to_vm("vm-web1", "vm-db1", 1433);
    assert_eq!(info.hops.len(), 3);
    only_last_has_issues(&info, 1);
    assert_eq!(context(&info, 2, "RuleName").as_deref(), Some("DefaultRule_DenyAllInBound"));
}

#[test]
fn every_nsg_issue_is_ip_flow_verifys_verdict() {
    let env = common::rest_env();
    for (src, dst, dst_ip, port) in [
        ("vm-app1", "vm-db1", "10.2.2.4", 22u16),
        ("vm-jump", "vm-db1", "10.2.2.4", 22),
        ("vm-web1", "vm-db1", "10.2.2.4", 1433),
        ("vm-web1", "vm-app1", "10.2.1.4", 8080),
        ("vm-app1", "vm-db1", "10.2.2.4", 1433),
    ] {
        let info = check_connectivity(
            &env,
            &params(
                src,
                ConnectivityDestination::VirtualMachine(dst.into()),
                Some(port),
                ConnectivityProtocol::Tcp,
            ),
        )
        .unwrap();
        let source: IpAddr = info.hops[0].address.parse().unwrap();
        let destination: IpAddr = dst_ip.parse().unwrap();
        let verify = |vm: &str, direction: Direction| {
            let (local, lport, remote, rport) = match direction {
                Direction::Outbound => (source, DEFAULT_SOURCE_PORT, destination, port),
                Direction::Inbound => (destination, port, source, DEFAULT_SOURCE_PORT),
            };
            let p = IpFlowVerifyParameters {
                vm: Some(vm.into()),
                nic: None,
                direction,
                protocol: IpFlowProtocol::Tcp,
                local_ip: local,
                local_port: lport,
                remote_ip: remote,
                remote_port: rport,
                any_source_port: false,
            };
            ip_flow_verify(&env, &p).unwrap().0
        };
        let out = verify(src, Direction::Outbound);
        let inb = verify(dst, Direction::Inbound);
        let flow_log_name = |qualified: &str| {
            let (kind, name) = qualified.split_once('/').unwrap();
            format!("{}_{name}", if kind == "securityRules" { "UserRule" } else { "DefaultRule" })
        };
        let last = info.hops.len() - 1;
        match (out.access, inb.access) {
            (Access::Deny, _) => {
                assert_eq!(info.connection_status, ConnectionStatus::Disconnected, "{src}->{dst}:{port}");
                assert_eq!(
                    context(&info, 0, "RuleName"),
                    out.rule_name.as_deref().map(flow_log_name),
                    "{src}->{dst}:{port}"
                );
            }
            (Access::Allow, Access::Deny) => {
                assert_eq!(
                    context(&info, last, "RuleName"),
                    inb.rule_name.as_deref().map(flow_log_name),
                    "{src}->{dst}:{port}"
                );
            }
            (Access::Allow, Access::Allow) => {
                // Only an appliance in between could still stop it.
                assert!(
                    info.hops[0].issues.is_empty() && info.hops[last].issues.is_empty(),
                    "{src}->{dst}:{port}"
                );
            }
        }
    }
}

#[test]
fn routes_that_drop_the_packet() {
    let env = common::rest_env();
    // A user None route, IPv4 and IPv6 (the source address follows the
    // destination's family).
    for (dst, prefix, name, source) in [
        ("203.0.113.5", "203.0.113.0/24", "blackhole-test-net", "10.1.1.4"),
        ("2001:db8:99::1", "2001:db8:99::/48", "blackhole-v6-lab", "fd00:1:0:1::4"),
    ] {
        let info = to_address(&env, "vm-web1", dst, Some(443), ConnectivityProtocol::Tcp);
        assert_eq!(hops(&info), vec![h("Source", source, Some("nic-web1"))]);
        assert_eq!(info.connection_status, ConnectionStatus::Disconnected);
        assert_eq!(info.hops[0].issues[0].issue_type, IssueType::UserDefinedRoute);
        assert_eq!(context(&info, 0, "AddressPrefix").as_deref(), Some(prefix));
        assert_eq!(context(&info, 0, "RouteName").as_deref(), Some(name));
    }
    // The system None route of 10.0.0.0/8 from the unpeered legacy VNet.
    let info = to_vm("vm-legacy", "vm-web1", 80);
    assert_eq!(info.connection_status, ConnectionStatus::Disconnected);
    assert_eq!(info.hops[0].issues[0].issue_type, IssueType::Platform);
    assert_eq!(context(&info, 0, "RouteSource").as_deref(), Some("Default"));
    assert_eq!(context(&info, 0, "AddressPrefix").as_deref(), Some("10.0.0.0/8"));
    // Through the firewall first (app's 0.0.0.0/0 user route), then the
    // hub's system None route: the issue sits on the appliance hop.
    let info = to_address(&env, "vm-app1", "10.99.0.1", None, ConnectivityProtocol::Icmp);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.2.1.4", Some("nic-app1")),
            h("VirtualAppliance", "10.0.1.4", Some("nic-fw"))
        ]
    );
    only_last_has_issues(&info, 1);
    assert_eq!(info.connection_status, ConnectionStatus::Disconnected);
}

#[test]
fn appliance_without_ip_forwarding_drops() {
    let env = env_with(&["fw-no-forwarding.json"]);
    let info = vm_to_vm(&env, "vm-web1", "vm-app1", 8080);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.1.1.4", Some("nic-web1")),
            h("VirtualAppliance", "10.0.1.4", Some("nic-fw"))
        ]
    );
    only_last_has_issues(&info, 1);
    assert_eq!(info.hops[1].issues[0].issue_type, IssueType::Platform);
    assert_eq!(info.connection_status, ConnectionStatus::Disconnected);
}

#[test]
fn paths_that_leave_the_resources_are_unknown() {
    let env = common::rest_env();
    let info = to_address(&env, "vm-web1", "8.8.8.8", None, ConnectivityProtocol::Https);
    assert_eq!(
        hops(&info),
        vec![h("Source", "10.1.1.4", Some("nic-web1")), h("Internet", "8.8.8.8", None)]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Unknown);
    only_last_has_issues(&info, 0);
    // On-premises through the hub's VPN gateway (useRemoteGateways).
    let info = to_address(&env, "vm-web1", "192.168.3.3", Some(443), ConnectivityProtocol::Tcp);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.1.1.4", Some("nic-web1")),
            h("VirtualNetworkGateway", "10.0.255.30", None)
        ]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Unknown);
    // An address of the VNet that no loaded NIC holds.
    let info = to_address(&env, "vm-web1", "10.1.1.200", Some(80), ConnectivityProtocol::Tcp);
    assert_eq!(
        hops(&info),
        vec![h("Source", "10.1.1.4", Some("nic-web1")), h("VnetLocal", "10.1.1.200", None)]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Unknown);
}

#[test]
fn bad_requests_are_errors() {
    let env = common::rest_env();
    let icmp_port = check_connectivity(
        &env,
        &params(
            "vm-web1",
            ConnectivityDestination::Address("10.2.1.4".parse().unwrap()),
            Some(80),
            ConnectivityProtocol::Icmp,
        ),
    );
    assert!(icmp_port.unwrap_err().to_string().contains("ICMP has no ports"));
    let no_port = check_connectivity(
        &env,
        &params(
            "vm-web1",
            ConnectivityDestination::Address("10.2.1.4".parse().unwrap()),
            None,
            ConnectivityProtocol::Tcp,
        ),
    );
    assert!(no_port.unwrap_err().to_string().contains("needs a destination port"));
    let unknown = check_connectivity(
        &env,
        &params(
            "vm-nope",
            ConnectivityDestination::VirtualMachine("vm-app1".into()),
            Some(80),
            ConnectivityProtocol::Tcp,
        ),
    );
    assert!(unknown.unwrap_err().to_string().contains("vm-nope"));
}

#[test]
fn cli_prints_azures_shape_and_a_table() {
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_netwatch"))
            .current_dir(common::root())
            .args([
                "connectivity-check",
                "--resources",
                "demo/hub-spoke",
                "--service-tags",
                "demo/ServiceTags_Demo.json",
            ])
            .args(["--source-vm", "vm-app1", "--dest-vm", "vm-db1", "--dest-port", "22"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let v: serde_json::Value = serde_json::from_str(&run(&[])).unwrap();
    assert_eq!(v["connectionStatus"], "Disconnected");
    assert_eq!(v["probesSent"], 0);
    let issue = &v["hops"][0]["issues"][0];
    assert_eq!(issue["origin"], "Outbound");
    assert_eq!(issue["severity"], "Error");
    assert_eq!(issue["type"], "NetworkSecurityRule");
    assert_eq!(
        issue["context"][0],
        serde_json::json!({"key": "RuleName", "value": "UserRule_Deny-Db-Subnet-Out"})
    );
    assert!(v["hops"][0]["resourceId"]
        .as_str()
        .unwrap()
        .ends_with("/networkInterfaces/nic-app1/ipConfigurations/ipconfig1"));
    let table = run(&["-o", "table"]);
    assert!(table.lines().next().unwrap().starts_with("Type"), "{table}");
    assert!(table.contains("RuleName=UserRule_Deny-Db-Subnet-Out"), "{table}");
    // The az CLI's name for the command works too.
    let out = Command::new(env!("CARGO_BIN_EXE_netwatch"))
        .args(["test-connectivity", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// The demo with files of tests/data/connectivity laid over it (a later
/// file's resource replaces the earlier one with the same id).
fn env_with(files: &[&str]) -> Environment {
    let mut paths = vec![common::root().join("demo/hub-spoke")];
    paths.extend(files.iter().map(|f| common::root().join("tests/data/connectivity").join(f)));
    let mut env = Environment::load(&paths).unwrap();
    env.load_service_tags(&common::real_service_tags()).unwrap();
    env
}

fn vm_to_vm(env: &Environment, src: &str, dst: &str, port: u16) -> ConnectivityInformation {
    check_connectivity(
        env,
        &params(
            src,
            ConnectivityDestination::VirtualMachine(dst.into()),
            Some(port),
            ConnectivityProtocol::Tcp,
        ),
    )
    .unwrap()
}

/// A VnetLocal user route for vnet-legacy's range: the packet stays in
/// vnet-web (not peered with vnet-legacy), so nic-legacy is not reached.
#[test]
fn a_nic_in_an_unpeered_vnet_is_not_reached() {
    let env = env_with(&["rt-web-legacy.json"]);
    let info = vm_to_vm(&env, "vm-web1", "vm-legacy", 22);
    assert_eq!(
        hops(&info),
        vec![h("Source", "10.1.1.4", Some("nic-web1")), h("VnetLocal", "10.3.1.4", None)]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Unknown);
}

/// The request passes (nsg-db allows SQL from vnet-web's range here), but
/// the reply is routed by the destination's subnet: a None route there
/// drops it (the issue sits on the destination's hop), and without it the
/// reply leaves by the hub's VPN gateway (a learned route for the web
/// subnet), not back through the firewall.
#[test]
fn the_reply_takes_the_destinations_routes() {
    let env = env_with(&["nsg-db-allow-web.json", "vnet-app-rtdb.json", "rt-db.json"]);
    let info = vm_to_vm(&env, "vm-web1", "vm-db1", 1433);
    assert_eq!(info.hops.len(), 3);
    assert_eq!(info.connection_status, ConnectionStatus::Disconnected);
    only_last_has_issues(&info, 1);
    let issue = &info.hops[2].issues[0];
    assert_eq!(
        (issue.origin, issue.issue_type),
        (IssueOrigin::Outbound, IssueType::UserDefinedRoute)
    );
    assert!(context(&info, 2, "Reason").is_some_and(|r| r.contains("reply from 10.2.2.4 to 10.1.1.4")));
    assert_eq!(context(&info, 2, "AddressPrefix").as_deref(), Some("10.1.0.0/16"));

    let env = env_with(&["nsg-db-allow-web.json"]);
    let info = vm_to_vm(&env, "vm-web1", "vm-db1", 1433);
    assert_eq!(info.connection_status, ConnectionStatus::Unknown);
    only_last_has_issues(&info, 1);
    assert_eq!(info.hops[2].issues[0].severity, IssueSeverity::Warning);
    assert!(context(&info, 2, "Reason").is_some_and(|r| r.contains("VirtualNetworkGateway 10.0.255.30")));
}

/// Addressed to the appliance itself: delivered there (one inbound check),
/// not forwarded; its IP forwarding does not matter.
#[test]
fn the_appliance_as_destination_is_delivered() {
    let env = env_with(&["rt-web-hubfw.json"]);
    let info = to_address(&env, "vm-web1", "10.0.1.4", Some(443), ConnectivityProtocol::Tcp);
    assert_eq!(
        hops(&info),
        vec![
            h("Source", "10.1.1.4", Some("nic-web1")),
            h("VirtualAppliance", "10.0.1.4", Some("nic-fw"))
        ]
    );
    assert_eq!(info.connection_status, ConnectionStatus::Connected);
    let env = env_with(&["fw-no-forwarding.json"]);
    assert_eq!(
        vm_to_vm(&env, "vm-web1", "vm-fw", 443).connection_status,
        ConnectionStatus::Connected
    );
}

/// To the source's own address: the guest delivers it, no NSG sees it
/// (nsg-web-nic denies SMTP out).
#[test]
fn to_itself_never_leaves_the_guest() {
    let info = to_vm("vm-web1", "vm-web1", 25);
    assert_eq!(hops(&info), vec![h("Source", "10.1.1.4", Some("nic-web1"))]);
    assert_eq!(info.connection_status, ConnectionStatus::Connected);
    only_last_has_issues(&info, 0);
}

/// preferredIPVersion picks the destination VM's address family, and the
/// source address follows it.
#[test]
fn preferred_ip_version_picks_the_family() {
    let env = common::rest_env();
    let mut p = params(
        "vm-web1",
        ConnectivityDestination::VirtualMachine("vm-web1".into()),
        Some(80),
        ConnectivityProtocol::Tcp,
    );
    p.preferred_ip_version = Some(PreferredIpVersion::IPv6);
    let info = check_connectivity(&env, &p).unwrap();
    assert_eq!(info.hops[0].address, "fd00:1:0:1::4");
    // vm-web2 has no IPv6 address.
    let mut p = params(
        "vm-web1",
        ConnectivityDestination::VirtualMachine("vm-web2".into()),
        Some(80),
        ConnectivityProtocol::Tcp,
    );
    p.preferred_ip_version = Some(PreferredIpVersion::IPv6);
    assert!(check_connectivity(&env, &p)
        .unwrap_err()
        .to_string()
        .contains("no private IP address of IPv6"));
}
