//! IP flow verify over the hub-and-spoke environment, in both JSON shapes:
//! the exact decision and rule name for each point of the NSG semantics.

mod common;

use std::net::IpAddr;

use netwatch::watcher::{ip_flow_verify, IpFlowProtocol, IpFlowVerifyParameters, NicView};
use netwatch::Environment;
use netwatch_rules::{Access, Direction, Flow};

struct Case {
    what: &'static str,
    vm: &'static str,
    dir: Direction,
    proto: IpFlowProtocol,
    local: &'static str,
    remote: &'static str,
    access: Access,
    rule: Option<&'static str>,
}

use Access::{Allow, Deny};
use Direction::{Inbound as In, Outbound as Out};
use IpFlowProtocol::{Tcp, Udp};

#[allow(clippy::too_many_arguments)] // one argument per column of the case table
const fn c(
    what: &'static str,
    vm: &'static str,
    dir: Direction,
    proto: IpFlowProtocol,
    local: &'static str,
    remote: &'static str,
    access: Access,
    rule: Option<&'static str>,
) -> Case {
    Case {
        what,
        vm,
        dir,
        proto,
        local,
        remote,
        access,
        rule,
    }
}

const INTERNET: &str = "52.178.4.10";

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // vm-web1: NSG on subnet and on NIC.
        c("both allow: ruleName from the NIC NSG (last evaluated inbound)", "vm-web1", In, Tcp, "10.1.1.4:443", "52.178.4.10:50000", Allow, Some("securityRules/Allow-Web-In")),
        c("subnet deny ends evaluation", "vm-web1", In, Tcp, "10.1.1.4:22", "52.178.4.10:50000", Deny, Some("securityRules/Deny-SSH-From-Internet")),
        c("single-IP source rule on subnet, VirtualNetwork rule on NIC", "vm-web1", In, Tcp, "10.1.1.4:22", "10.0.2.4:50000", Allow, Some("securityRules/Allow-SSH-VNet-In")),
        c("peered hub address is VirtualNetwork", "vm-web1", In, Tcp, "10.1.1.4:22", "10.0.1.4:50000", Allow, Some("securityRules/Allow-SSH-VNet-In")),
        c("augmented rule allows on subnet, NIC denies", "vm-web1", In, Tcp, "10.1.1.4:8081", "52.178.4.10:50000", Deny, Some("securityRules/Deny-8081-In")),
        c("augmented port range on both levels", "vm-web1", In, Tcp, "10.1.1.4:8085", "52.178.4.10:50000", Allow, Some("securityRules/Allow-Web-In")),
        c("augmented port list", "vm-web1", In, Tcp, "10.1.1.4:80", "52.178.4.10:50000", Allow, Some("securityRules/Allow-Web-In")),
        c("TCP rule does not match UDP", "vm-web1", In, Udp, "10.1.1.4:443", "52.178.4.10:50000", Deny, Some("defaultSecurityRules/DenyAllInBound")),
        c("default AllowVnetInBound on both", "vm-web1", In, Tcp, "10.1.1.4:3389", "10.0.2.4:50000", Allow, Some("defaultSecurityRules/AllowVnetInBound")),
        c("peering not Connected is not VirtualNetwork", "vm-web1", In, Tcp, "10.1.1.4:3389", "10.3.1.4:50000", Deny, Some("defaultSecurityRules/DenyAllInBound")),
        c("on-premises behind a connected gateway (remote gateway) is VirtualNetwork", "vm-web1", In, Tcp, "10.1.1.4:3389", "192.168.5.5:50000", Allow, Some("defaultSecurityRules/AllowVnetInBound")),
        c("site behind a NotConnected connection is not VirtualNetwork", "vm-web1", In, Tcp, "10.1.1.4:3389", "10.50.1.1:50000", Deny, Some("defaultSecurityRules/DenyAllInBound")),
        c("UDR prefix of the subnet's route table is VirtualNetwork", "vm-web1", In, Tcp, "10.1.1.4:3389", "10.2.1.4:50000", Allow, Some("defaultSecurityRules/AllowVnetInBound")),
        c("168.63.129.16 is VirtualNetwork (65000 before 65001)", "vm-web1", In, Tcp, "10.1.1.4:3389", "168.63.129.16:50000", Allow, Some("defaultSecurityRules/AllowVnetInBound")),
        c("outbound: regional service tag, ruleName from subnet NSG (last outbound)", "vm-web1", Out, Tcp, "10.1.1.4:50000", "13.69.40.20:443", Allow, Some("securityRules/Allow-Storage-WestEurope-Out")),
        c("outbound: service tag deny on subnet after NIC allows", "vm-web1", Out, Tcp, "10.1.1.4:50000", "13.69.104.10:1433", Deny, Some("securityRules/Deny-Sql-Out")),
        c("outbound: NIC deny first", "vm-web1", Out, Tcp, "10.1.1.4:50000", "52.178.4.10:25", Deny, Some("securityRules/Deny-SMTP-Out")),
        c("outbound UDP rule to Internet tag", "vm-web1", Out, Udp, "10.1.1.4:50000", "8.8.8.8:53", Deny, Some("securityRules/Deny-DNS-Internet-Out")),
        c("outbound UDP inside VirtualNetwork", "vm-web1", Out, Udp, "10.1.1.4:50000", "10.0.2.4:53", Allow, Some("defaultSecurityRules/AllowVnetOutBound")),
        c("outbound default Internet allow", "vm-web1", Out, Tcp, "10.1.1.4:50000", "8.8.8.8:443", Allow, Some("defaultSecurityRules/AllowInternetOutBound")),
        c("private address outside VNet is not Internet", "vm-web1", Out, Tcp, "10.1.1.4:50000", "10.10.10.10:443", Deny, Some("defaultSecurityRules/DenyAllOutBound")),
        c("IPv6: ::/0 rule", "vm-web1", In, Tcp, "[fd00:1:0:1::4]:23", "[2001:4860::1]:40000", Deny, Some("securityRules/Deny-Telnet-IPv6")),
        c("IPv6: augmented destination with an IPv6 prefix", "vm-web1", In, Tcp, "[fd00:1:0:1::4]:8080", "[2001:4860::1]:40000", Allow, Some("securityRules/Allow-Web-In")),
        c("::/0 does not match IPv4", "vm-web1", In, Tcp, "10.1.1.4:23", "52.178.4.10:40000", Deny, Some("defaultSecurityRules/DenyAllInBound")),
        c("IPv6 Internet tag", "vm-web1", In, Tcp, "[fd00:1:0:1::4]:443", "[2603:1020:207::5]:1234", Allow, Some("securityRules/Allow-Web-In")),
        c("IPv6 service tag prefix", "vm-web1", Out, Tcp, "[fd00:1:0:1::4]:50000", "[2603:1020:207::10]:443", Allow, Some("securityRules/Allow-Storage-WestEurope-Out")),
        // vm-web2: subnet NSG only.
        c("subnet only: subnet rule decides", "vm-web2", In, Tcp, "10.1.1.5:8081", "52.178.4.10:50000", Allow, Some("securityRules/Allow-Web-Alt-In")),
        c("subnet only: deny", "vm-web2", In, Tcp, "10.1.1.5:22", "52.178.4.10:50000", Deny, Some("securityRules/Deny-SSH-From-Internet")),
        // vm-app1: NIC NSG only, ASG rules, a 0.0.0.0/0 UDR on its subnet.
        c("NIC only: prefix source, ASG destination", "vm-app1", In, Tcp, "10.2.1.4:8443", "10.1.1.4:50000", Allow, Some("securityRules/Allow-Web-To-App")),
        c("another NIC of the source prefix", "vm-app1", In, Tcp, "10.2.1.4:8443", "10.1.1.5:50000", Allow, Some("securityRules/Allow-Web-To-App")),
        c("source outside the prefix", "vm-app1", In, Tcp, "10.2.1.4:8443", "10.0.2.4:50000", Deny, Some("securityRules/Deny-Other-8443")),
        c("a 0.0.0.0/0 UDR makes VirtualNetwork cover everything", "vm-app1", In, Tcp, "10.2.1.4:9999", "52.178.4.10:50000", Allow, Some("defaultSecurityRules/AllowVnetInBound")),
        c("outbound to destination ASG", "vm-app1", Out, Tcp, "10.2.1.4:50000", "10.2.2.4:1433", Allow, Some("securityRules/Allow-App-To-Db")),
        c("outbound prefix deny", "vm-app1", Out, Tcp, "10.2.1.4:50000", "10.2.2.4:22", Deny, Some("securityRules/Deny-Db-Subnet-Out")),
        c("outbound: protocol * rule catches UDP", "vm-app1", Out, Udp, "10.2.1.4:50000", "10.2.2.4:1433", Deny, Some("securityRules/Deny-Db-Subnet-Out")),
        // vm-db1: subnet NSG only, ASG rules, overriding AllowVnetInBound.
        c("ASG rule on a subnet NSG", "vm-db1", In, Tcp, "10.2.2.4:1433", "10.2.1.4:50000", Allow, Some("securityRules/Allow-Sql-From-App")),
        c("non-peered spoke is not VirtualNetwork", "vm-db1", In, Tcp, "10.2.2.4:1433", "10.1.1.4:50000", Deny, Some("defaultSecurityRules/DenyAllInBound")),
        c("user rule overrides AllowVnetInBound", "vm-db1", In, Tcp, "10.2.2.4:1433", "10.0.2.4:50000", Deny, Some("securityRules/Deny-VNet-In")),
        c("AzureLoadBalancer tag before the VNet deny", "vm-db1", In, Tcp, "10.2.2.4:1433", "168.63.129.16:50000", Allow, Some("securityRules/Allow-AzureLB-Probe")),
        c("outbound default Internet allow on subnet NSG", "vm-db1", Out, Tcp, "10.2.2.4:50000", "8.8.8.8:443", Allow, Some("defaultSecurityRules/AllowInternetOutBound")),
        // vm-jump: hub subnet NSG only.
        c("on-premises prefix rule", "vm-jump", In, Tcp, "10.0.2.4:3389", "192.168.10.20:50000", Allow, Some("securityRules/Allow-RDP-From-OnPrem")),
        c("priority order: allow at 100 missed, deny at 110", "vm-jump", In, Tcp, "10.0.2.4:3389", "10.1.1.4:50000", Deny, Some("securityRules/Deny-RDP")),
        c("TCP deny", "vm-jump", In, Tcp, "10.0.2.4:514", "10.1.1.4:50000", Deny, Some("securityRules/Deny-Syslog-Tcp")),
        c("same port over UDP falls to AllowVnetInBound", "vm-jump", In, Udp, "10.0.2.4:514", "10.1.1.4:50000", Allow, Some("defaultSecurityRules/AllowVnetInBound")),
        c("hub side: Initiated peering is not VirtualNetwork", "vm-jump", In, Tcp, "10.0.2.4:22", "10.3.1.4:50000", Deny, Some("defaultSecurityRules/DenyAllInBound")),
        c("global service tag", "vm-jump", Out, Tcp, "10.0.2.4:50000", "4.144.10.40:443", Allow, Some("securityRules/Allow-Monitor-Out")),
        c("Internet tag with a port list", "vm-jump", Out, Tcp, "10.0.2.4:50000", "52.178.4.10:443", Deny, Some("securityRules/Deny-Web-Out")),
        c("port outside the list", "vm-jump", Out, Tcp, "10.0.2.4:50000", "52.178.4.10:8443", Allow, Some("defaultSecurityRules/AllowInternetOutBound")),
        // vm-legacy: no NSG anywhere.
        c("no NSG: allow, no ruleName", "vm-legacy", In, Tcp, "10.3.1.4:22", "52.178.4.10:50000", Allow, None),
        c("no NSG outbound", "vm-legacy", Out, Udp, "10.3.1.4:5000", "8.8.8.8:53", Allow, None),
    ]
}

fn params(c: &Case) -> IpFlowVerifyParameters {
    let l: std::net::SocketAddr = c.local.parse().unwrap();
    let r: std::net::SocketAddr = c.remote.parse().unwrap();
    IpFlowVerifyParameters {
        vm: Some(c.vm.to_string()),
        nic: None,
        direction: c.dir,
        protocol: c.proto,
        local_ip: l.ip(),
        local_port: l.port(),
        remote_ip: r.ip(),
        remote_port: r.port(),
        any_source_port: false,
    }
}

fn check(env: &Environment, shape: &str) {
    let cases = cases();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for c in &cases {
        let p = params(c);
        match ip_flow_verify(env, &p) {
            Ok((r, explain)) => {
                if r.access != c.access || r.rule_name.as_deref() != c.rule {
                    failures.push(format!(
                        "[{shape}] {}: got {:?} {:?}, want {:?} {:?}",
                        c.what, r.access, r.rule_name, c.access, c.rule
                    ));
                }
                assert_eq!(explain.access, r.access);
                // The compiled classifier and the linear reference agree.
                let nic = netwatch::watcher::context::select_nic(env, Some(c.vm), None, Some(p.local_ip)).unwrap();
                let view = NicView::for_nic(env, nic, Some(p.local_ip)).unwrap();
                let chain = view.compile(c.dir).unwrap();
                let k = p.flow().key();
                assert_eq!(chain.decide(&k), chain.decide_linear(&k), "{}", c.what);
            }
            Err(e) => failures.push(format!("[{shape}] {}: error {e}", c.what)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn rest_shape_decisions() {
    check(&common::rest_env(), "REST");
}

#[test]
fn az_cli_shape_decisions() {
    check(&common::cli_env(), "az CLI");
}

/// ICMP and ESP cannot go through IP flow verify (TCP/UDP only), but the
/// chain decides them the same way.
#[test]
fn icmp_and_esp_through_the_chain() {
    let env = common::rest_env();
    let run = |vm: &str, local: &str, dir: Direction, flow: Flow| {
        let ip: IpAddr = local.parse().unwrap();
        let nic = netwatch::watcher::context::select_nic(&env, Some(vm), None, Some(ip)).unwrap();
        let view = NicView::for_nic(&env, nic, Some(ip)).unwrap();
        let chain = view.compile(dir).unwrap();
        let d = chain.decide(&flow.key());
        let name = d
            .decided_by
            .and_then(|v| v.rule_index.and_then(|i| chain.rule_name(v.chain_index, i)));
        (d.access, name)
    };
    let icmp = Flow {
        protocol: 1,
        source: "10.0.2.4".parse().unwrap(),
        source_port: 0,
        destination: "10.1.1.4".parse().unwrap(),
        destination_port: 0,
    };
    // Subnet allows by Allow-Icmp-In, the NIC by AllowVnetInBound.
    assert_eq!(
        run("vm-web1", "10.1.1.4", In, icmp),
        (Allow, Some("defaultSecurityRules/AllowVnetInBound".to_string()))
    );
    let icmp_inet = Flow {
        source: INTERNET.parse().unwrap(),
        ..icmp
    };
    assert_eq!(
        run("vm-web1", "10.1.1.4", In, icmp_inet),
        (Deny, Some("defaultSecurityRules/DenyAllInBound".to_string()))
    );
    let esp = Flow {
        protocol: 50,
        source: "192.168.1.1".parse().unwrap(),
        source_port: 0,
        destination: "10.0.2.4".parse().unwrap(),
        destination_port: 0,
    };
    assert_eq!(
        run("vm-jump", "10.0.2.4", In, esp),
        (Deny, Some("securityRules/Deny-Esp-In".to_string()))
    );
    let ah = Flow { protocol: 51, ..esp };
    assert_eq!(
        run("vm-jump", "10.0.2.4", In, ah),
        (Allow, Some("defaultSecurityRules/AllowVnetInBound".to_string()))
    );
}

#[test]
fn local_ip_must_belong_to_the_vm() {
    let env = common::rest_env();
    let mut p = params(&cases()[0]);
    p.local_ip = "10.1.1.99".parse().unwrap();
    let e = ip_flow_verify(&env, &p).unwrap_err().to_string();
    assert!(e.contains("10.1.1.99") && e.contains("vm-web1") && e.contains("10.1.1.4"), "{e}");
}

#[test]
fn names_and_ids_match_case_insensitively() {
    let env = common::rest_env();
    let mut p = params(&cases()[0]);
    p.vm = Some("VM-WEB1".into());
    assert_eq!(
        ip_flow_verify(&env, &p).unwrap().0.rule_name.as_deref(),
        Some("securityRules/Allow-Web-In")
    );
    p.vm = Some(
        "/SUBSCRIPTIONS/6F8C3A2E-1B4D-4E7F-9A0B-2C5D8E1F3A40/resourceGroups/RG-SPOKES/providers/Microsoft.Compute/virtualMachines/vm-web1"
            .into(),
    );
    assert_eq!(ip_flow_verify(&env, &p).unwrap().0.access, Allow);
}

/// An application security group's members sit in one VNet: a NIC of
/// another VNet with the same address (both VNets are 10.0.0.0/16, not
/// peered) is not matched by a rule on the group, though the NSG is
/// shared.
#[test]
fn asg_membership_is_per_vnet() {
    let env = Environment::load(&[common::root().join("tests/data/asg-two-vnets")]).expect("load");
    let p = |nic: &str| IpFlowVerifyParameters {
        vm: None,
        nic: Some(nic.to_string()),
        direction: In,
        protocol: Tcp,
        local_ip: "10.0.1.4".parse().unwrap(),
        local_port: 80,
        remote_ip: "8.8.8.8".parse().unwrap(),
        remote_port: 1000,
        any_source_port: false,
    };
    let (a, _) = ip_flow_verify(&env, &p("nicA")).expect("nicA");
    assert_eq!((a.access, a.rule_name.as_deref()), (Allow, Some("securityRules/allow-web-asg")));
    let (b, _) = ip_flow_verify(&env, &p("nicB")).expect("nicB");
    assert_eq!(
        (b.access, b.rule_name.as_deref()),
        (Deny, Some("defaultSecurityRules/DenyAllInBound"))
    );
}
