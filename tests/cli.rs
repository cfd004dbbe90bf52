//! End-to-end tests of the `netwatch` binary: output shapes, exit codes and
//! one-line errors naming the file and the field.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::netwatch;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `ip-flow-verify` of SSH from the Internet to vm-web1 over the resources
/// at `res` (the demo's answer: denied by Deny-SSH-From-Internet).
fn ssh_from_internet(res: &str, verbose: bool) -> Output {
    let mut args = vec!["ip-flow-verify", "--resources", res];
    if verbose {
        args.insert(0, "-v");
    }
    args.extend([
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--vm",
        "vm-web1",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:22",
        "--remote",
        "52.178.4.10:40000",
    ]);
    netwatch(&args)
}

#[test]
fn ip_flow_verify_prints_azure_result_shape() {
    let o = ssh_from_internet("demo/hub-spoke", false);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"access": "Deny", "ruleName": "securityRules/Deny-SSH-From-Internet"})
    );
}

#[test]
fn ip_flow_verify_without_nsg_has_no_rule_name() {
    let o = netwatch(&[
        "ip-flow-verify",
        "--resources",
        "tests/data/hub-spoke-cli",
        "--vm",
        "vm-legacy",
        "--direction",
        "Outbound",
        "--protocol",
        "UDP",
        "--local",
        "10.3.1.4:5000",
        "--remote",
        "8.8.8.8:53",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"access": "Allow"}));
}

#[test]
fn explain_lists_each_nsg_and_rule() {
    let o = netwatch(&[
        "ip-flow-verify",
        "--resources",
        "demo/hub-spoke",
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--vm",
        "vm-web1",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:8081",
        "--remote",
        "52.178.4.10:40000",
        "--explain",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let groups = v["evaluatedNetworkSecurityGroups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert!(groups[0]["networkSecurityGroupId"].as_str().unwrap().ends_with("/nsg-web-subnet"));
    assert!(groups[0]["appliedTo"].as_str().unwrap().ends_with("/subnets/snet-web"));
    assert_eq!(groups[0]["matchedRule"]["ruleName"], "securityRules/Allow-Web-Alt-In");
    assert_eq!(
        groups[1]["matchedRule"],
        serde_json::json!({"ruleName": "securityRules/Deny-8081-In", "action": "Deny"})
    );
    assert!(groups[1]["appliedTo"].as_str().unwrap().ends_with("/networkInterfaces/nic-web1"));
    assert_eq!(v["ruleName"], "securityRules/Deny-8081-In");
}

#[test]
fn effective_security_rules_normalise_like_azure() {
    let o = netwatch(&[&["effective-security-rules"], common::DEMO_WEB1].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let groups = v["value"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "one entry per NSG: subnet and NIC");
    assert!(groups[0]["association"]["subnet"]["id"]
        .as_str()
        .unwrap()
        .ends_with("/subnets/snet-web"));
    assert!(groups[1]["association"]["networkInterface"]["id"]
        .as_str()
        .unwrap()
        .ends_with("/nic-web1"));
    let rules = groups[0]["effectiveSecurityRules"].as_array().unwrap();
    let find = |n: &str| rules.iter().find(|r| r["name"] == n).unwrap_or_else(|| panic!("no rule {n}"));
    let inet = find("defaultSecurityRules/AllowInternetOutBound");
    assert_eq!(inet["protocol"], "All");
    assert_eq!(inet["sourceAddressPrefix"], "0.0.0.0/0");
    assert_eq!(inet["sourcePortRange"], "0-65535");
    assert_eq!(inet["destinationAddressPrefix"], "Internet");
    let exp: Vec<&str> = inet["expandedDestinationAddressPrefix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(
        &exp[..6],
        ["1.0.0.0/8", "2.0.0.0/7", "4.0.0.0/6", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6"]
    );
    assert!(inet["expandedSourceAddressPrefix"].is_null());
    let https = find("securityRules/Allow-HTTPS-In");
    assert_eq!(https["protocol"], "Tcp");
    assert_eq!(https["destinationPortRange"], "443-443");
    let alt = find("securityRules/Allow-Web-Alt-In");
    assert_eq!(alt["destinationPortRanges"], serde_json::json!(["80-80", "8080-8090"]));
    assert!(alt["destinationPortRange"].is_null());
    let storage = find("securityRules/Allow-Storage-WestEurope-Out");
    assert_eq!(
        storage["expandedDestinationAddressPrefix"],
        serde_json::json!(["13.69.40.16/28", "13.95.96.176/28", "13.95.240.16/28", "2603:1020:207::/48"])
    );
    let vnet: Vec<&str> = groups[0]["tagMap"]["VirtualNetwork"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for p in [
        "10.0.0.0/15",
        "10.2.0.0/16",
        "168.63.129.16/32",
        "172.16.10.0/24",
        "192.168.0.0/16",
        "fd00:1::/48",
    ] {
        assert!(vnet.contains(&p), "VirtualNetwork tag lacks {p}: {vnet:?}");
    }
    assert!(!vnet.iter().any(|p| p.starts_with("10.3.") || p.starts_with("10.50.")), "{vnet:?}");
}

#[test]
fn security_group_view_has_associations() {
    let o = netwatch(&[
        "security-group-view",
        "--resources",
        "tests/data/hub-spoke-cli",
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--vm",
        "vm-web1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nic = &v["networkInterfaces"][0];
    assert!(nic["id"].as_str().unwrap().ends_with("/nic-web1"));
    let a = &nic["securityRuleAssociations"];
    assert_eq!(a["networkInterfaceAssociation"]["securityRules"].as_array().unwrap().len(), 5);
    assert_eq!(a["subnetAssociation"]["securityRules"].as_array().unwrap().len(), 9);
    // Rules come back in the ARM shape even from az CLI input.
    assert_eq!(
        a["subnetAssociation"]["securityRules"][0]["properties"]["destinationPortRange"],
        "443"
    );
    assert_eq!(a["defaultSecurityRules"].as_array().unwrap().len(), 6);
    assert_eq!(a["defaultSecurityRules"][2]["name"], "DenyAllInBound");
    assert_eq!(a["effectiveSecurityRules"].as_array().unwrap().len(), 9 + 5 + 12);
}

/// Keys the loader reads without case come back spelled as ARM spells
/// them: a rule written with `NAME`, `PRIORITY`, an az-style top-level
/// `PROTOCOL` and `{"ID": ...}` ASG references is the rule as Azure writes
/// it (the keys were copied as written: the rule lacked `name`, `priority`).
#[test]
fn security_group_view_spells_keys_as_arm_does() {
    let view = |extra: Option<&str>| {
        let mut args = vec!["security-group-view", "--resources", "demo/hub-spoke"];
        if let Some(e) = extra {
            args.extend(["--resources", e]);
        }
        args.extend(["--service-tags", "demo/ServiceTags_Demo.json", "--vm", "vm-app1"]);
        let o = netwatch(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["networkInterfaces"][0]["securityRuleAssociations"]["networkInterfaceAssociation"]["securityRules"].clone()
    };
    let text = std::fs::read_to_string("demo/hub-spoke/rg-spokes/networkSecurityGroups.json").unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut nsg = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "nsg-app-nic")
        .unwrap()
        .clone();
    let rule = nsg["properties"]["securityRules"][0].as_object_mut().unwrap();
    let name = rule.remove("name").unwrap();
    rule.insert("NAME".into(), name);
    let props = rule["properties"].as_object_mut().unwrap();
    let priority = props.remove("priority").unwrap();
    props.insert("PRIORITY".into(), priority);
    let protocol = props.remove("protocol").unwrap();
    let mut asgs = props.remove("destinationApplicationSecurityGroups").unwrap();
    for a in asgs.as_array_mut().unwrap() {
        let id = a.as_object_mut().unwrap().remove("id").unwrap();
        a["ID"] = id;
    }
    props.insert("DestinationApplicationSecurityGroups".into(), asgs);
    rule.insert("PROTOCOL".into(), protocol);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nsg-app-nic.json");
    std::fs::write(&path, nsg.to_string()).unwrap();
    let (want, got) = (view(None), view(Some(path.to_str().unwrap())));
    assert!(
        want[0]["properties"]["destinationApplicationSecurityGroups"][0]["id"].is_string(),
        "{want}"
    );
    assert_eq!(got, want);
}

#[test]
fn table_output_is_for_people() {
    let o = netwatch(&[
        "effective-security-rules",
        "--resources",
        "demo/hub-spoke",
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--nic",
        "nic-db1",
        "-o",
        "table",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let first = s.lines().next().unwrap();
    assert!(
        first.starts_with("NSG") && first.contains("Priority") && first.contains("Access"),
        "{s}"
    );
    assert!(s.contains("securityRules/Deny-VNet-In"), "{s}");
}

/// Every malformed resource file: exit 1, one `error:` line naming the file
/// and the JSON path as jq would address it (`properties.` included in the
/// ARM shape), no panic.
#[test]
fn malformed_resources_get_one_line_errors() {
    let cases: &[(&str, &[&str])] = &[
        (
            "bad-port.json",
            &[
                "properties.securityRules[3].properties.destinationPortRange",
                "\"80-\" is not a port",
            ],
        ),
        (
            "port-too-big.json",
            &["properties.securityRules[0].properties.destinationPortRange", "\"70000\""],
        ),
        (
            "bad-priority.json",
            &[
                "properties.securityRules[0].properties.priority",
                "5000 is not a priority from 100 to 4096",
            ],
        ),
        (
            "duplicate-priority.json",
            &["properties.securityRules[1].properties.priority", "already used by rule \"a\""],
        ),
        (
            "bad-protocol.json",
            &[
                "properties.securityRules[0].properties.protocol",
                "\"Sctp\" is not one of Tcp, Udp, Icmp, Esp, Ah, *",
            ],
        ),
        (
            "bad-access.json",
            &["properties.securityRules[0].properties.access", "Allow or Deny"],
        ),
        (
            "missing-direction.json",
            &["properties.securityRules[0].properties.direction", "missing required field"],
        ),
        (
            "bad-prefix.json",
            &["properties.securityRules[0].properties.sourceAddressPrefix", "\"10.0.0.0/33\""],
        ),
        (
            "bad-plural-prefix.json",
            &["properties.securityRules[0].properties.sourceAddressPrefixes[1]", "\"300.1.1.1\""],
        ),
        (
            "rules-not-array.json",
            &["properties.securityRules:", "expected an array, found an object"],
        ),
        (
            "priority-string.json",
            &["properties.securityRules[0].properties.priority", "\"high\""],
        ),
        (
            "bad-nic-ip.json",
            &[
                "properties.ipConfigurations[0].properties.privateIPAddress",
                "\"10.0.0.256\" is not an IP address",
            ],
        ),
        (
            "bad-vnet-space.json",
            &["properties.subnets[0].properties.addressPrefix", "\"10.0.0.0/24x\""],
        ),
        // Azure refuses both (HTTP 400, "invalid Address prefix"): errors, not truncation.
        (
            "prefix-host-bits.json",
            &[
                "properties.securityRules[0].properties.sourceAddressPrefix",
                "\"50.206.209.68/27\"",
                "host bits are set",
                "50.206.209.64/27",
            ],
        ),
        (
            "prefix-and-asg.json",
            &[
                "properties.securityRules[0].properties.destinationApplicationSecurityGroups",
                "not both",
            ],
        ),
        (
            "vnet-space-host-bits.json",
            &[
                "properties.addressSpace.addressPrefixes[1]",
                "\"10.1.2.3/16\"",
                "host bits are set",
                "10.1.0.0/16",
            ],
        ),
        (
            "subnet-prefix-array.json",
            &[
                "properties.subnets[0].properties.addressPrefix",
                "expected a string, found an array",
            ],
        ),
        (
            "default-rule-priority.json",
            &[
                "properties.defaultSecurityRules[0].properties.priority",
                "100 is not a default rule priority from 65000 to 65500",
            ],
        ),
        (
            "bad-bgp-address.json",
            &["properties.bgpSettings.bgpPeeringAddress", "\"10.1.255.30x\" is not an IP address"],
        ),
        (
            "duplicate-default-priority.json",
            &[
                "properties.defaultSecurityRules[1].properties.priority",
                "already used by rule \"AllowVnetInBound\"",
            ],
        ),
        // Audit of the loader: data Azure never writes is an error, not a
        // guess.
        (
            "nsg-without-rules.json",
            &["[0].securityRules", "the NSG's rules are not in this file", "az network nsg show"],
        ),
        (
            "partial-default-rules.json",
            &["properties.defaultSecurityRules:", "lacks \"AllowVnetInBound\""],
        ),
        (
            "altered-default-rule.json",
            &[
                "properties.defaultSecurityRules[0].properties.access",
                "default rule \"DenyAllInBound\" differs from Azure's",
            ],
        ),
        (
            "duplicate-rule-name.json",
            &["properties.securityRules[1].name", "\"Web\" is already the name of rule 0"],
        ),
        (
            "bad-rule-name.json",
            &["properties.securityRules[0].name", "\"web-\" is not a rule name"],
        ),
        (
            "plural-prefix-tag.json",
            &[
                "properties.securityRules[0].properties.sourceAddressPrefixes[1]",
                "the plural field takes IP addresses and prefixes only",
            ],
        ),
        (
            "single-and-plural-prefix.json",
            &[
                "properties.securityRules[0].properties.sourceAddressPrefixes",
                "set beside sourceAddressPrefix",
            ],
        ),
        // Characters, not bytes: rule 0's 140 (ü, é) pass.
        (
            "long-description.json",
            &[
                "properties.securityRules[1].properties.description",
                "141 characters long; a rule's description has at most 140",
            ],
        ),
        (
            "address-space-array.json",
            &["properties.addressSpace", "expected an object, found an array"],
        ),
        // A `properties` that is not an object held the resource's fields:
        // dropping it gave wrong answers (a route table without routes).
        ("properties-array.json", &[".json: properties: expected an object, found an array"]),
        (
            "rule-properties-string.json",
            &["value[0].properties.securityRules[0].properties: expected an object, found a string"],
        ),
        // What cannot be placed is an error, not skipped: a learned route
        // lacking its origin vanished, and a list under `value` that is not
        // an array was read as one resource of no type.
        (
            "learned-route-no-origin.json",
            &["value[1]: cannot tell what resource this is: no type, no id, and not a learned route (missing origin)"],
        ),
        ("value-not-array.json", &[".json: value: expected an array"]),
        ("arm-template.json", &["an ARM template export is not read"]),
        // A prefix is written exactly (the length's `+` and the spaces were
        // taken: `10.0.0.0/+8` was 10.0.0.0/8).
        (
            "prefix-plus-length.json",
            &[
                "properties.securityRules[0].properties.sourceAddressPrefix",
                "\"10.0.0.0/+8\" is not an IP address or CIDR prefix",
                "digits 0-9 only",
            ],
        ),
        (
            "prefix-newline.json",
            &["properties.securityRules[0].properties.sourceAddressPrefix", "whitespace"],
        ),
        (
            "vnet-space-inner-space.json",
            &["properties.addressSpace.addressPrefixes[0]", "\"10.0.0.0 /24\"", "whitespace"],
        ),
        // A NIC without an IP configuration failed later, without a file.
        (
            "nic-without-ip-configurations.json",
            &["properties.ipConfigurations: a network interface needs at least one IP configuration"],
        ),
        (
            "nic-ip-configurations-missing.json",
            &["value[0].properties.ipConfigurations: a network interface needs at least one IP configuration"],
        ),
        ("not-a-resource.json", &["expected a resource object"]),
        ("truncated.json", &["line 2", "not valid JSON"]),
        // Topologies Azure refuses to create loaded without a word.
        (
            "subnet-outside-space.json",
            &[
                "properties.subnets[1].properties.addressPrefix: ",
                "\"10.9.1.0/24\" of subnet \"outside\" is not within the address space of virtual network \"v\" (10.0.0.0/16, 10.1.0.0/16)",
                "expected a prefix inside one of the virtual network's address prefixes",
            ],
        ),
        (
            "subnet-prefixes-outside-space.json",
            &[
                "properties.subnets[0].properties.addressPrefixes[1]: ",
                "\"fd00:1:0:1::/64\" of subnet \"dual\" is not within the address space",
            ],
        ),
        (
            "subnet-across-spaces.json",
            &[
                "properties.subnets[0].properties.addressPrefix: ",
                "\"10.0.0.0/15\" of subnet \"wide\" is not within the address space",
            ],
        ),
        (
            "subnet-standalone-outside-space.json",
            &[
                ": [1].properties.addressPrefix: ",
                "\"192.168.1.0/24\" of subnet \"s\" is not within the address space of virtual network \"v\" (10.0.0.0/16)",
            ],
        ),
        (
            "peering-to-itself.json",
            &[
                "properties.virtualNetworkPeerings[0].properties.remoteVirtualNetwork.id: ",
                "peering \"to-self\": remoteVirtualNetwork \"/subscriptions/S/resourceGroups/RG/",
                "is virtual network \"v\" itself; expected the id of another virtual network",
            ],
        ),
        (
            "learned-route-host-bits.json",
            &[
                "value[1].network: ",
                "\"10.1.2.3/16\" is not a CIDR prefix: its host bits are set",
                "expected the network, 10.1.0.0/16",
            ],
        ),
    ];
    for (file, needles) in cases {
        let path = format!("tests/data/malformed/{file}");
        let o = netwatch(&["effective-security-rules", "--resources", &path, "--nic", "x"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: one line expected: {err}");
        assert!(err.starts_with("error: "), "{file}: {err}");
        assert!(err.contains(&path), "{file}: error does not name the file: {err}");
        for n in *needles {
            assert!(err.contains(n), "{file}: error lacks {n:?}: {err}");
        }
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
}

/// Topologies Azure refuses to create (a subnet outside its VNet's
/// address space, inline or on its own; a peering of a VNet with itself;
/// a learned route with host bits set) are refused as they load, by every
/// command that loads resources: exit 1, one line naming the file, the JSON
/// path of the field, the value and what was expected. They loaded without
/// a word; the demo alone still loads.
#[test]
fn topologies_azure_refuses_are_refused_by_every_command() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "subnet-outside-space.json",
            "properties.subnets[1].properties.addressPrefix",
            "\"10.9.1.0/24\" of subnet \"outside\" is not within the address space of virtual network \"v\"",
        ),
        (
            "subnet-standalone-outside-space.json",
            "[1].properties.addressPrefix",
            "\"192.168.1.0/24\" of subnet \"s\" is not within the address space of virtual network \"v\"",
        ),
        (
            "peering-to-itself.json",
            "properties.virtualNetworkPeerings[0].properties.remoteVirtualNetwork.id",
            "is virtual network \"v\" itself; expected the id of another virtual network",
        ),
        (
            "learned-route-host-bits.json",
            "value[1].network",
            "\"10.1.2.3/16\" is not a CIDR prefix: its host bits are set, which Azure never writes in a learned route (expected the network, 10.1.0.0/16)",
        ),
    ];
    let pcap = "../shared/corpus/pcap/tcpdump__ssh.pcap";
    let evaluate = ["evaluate", "--nic", "nic-web1", pcap];
    let commands: Vec<&[&str]> = RESOURCE_COMMANDS
        .iter()
        .copied()
        .chain([
            &[
                "connectivity-check",
                "--source-vm",
                "vm-web1",
                "--dest-vm",
                "vm-db1",
                "--dest-port",
                "1433",
            ][..],
            &evaluate,
        ])
        .collect();
    let tags = ["--service-tags", "demo/ServiceTags_Demo.json"];
    for (file, at, needle) in cases {
        let path = format!("tests/data/malformed/{file}");
        for command in &commands {
            let args = [
                &[command[0], "--resources", "demo/hub-spoke", "--resources", &path][..],
                &tags,
                &command[1..],
            ]
            .concat();
            let o = netwatch(&args);
            let err = stderr(&o);
            let what = format!("{} with {path}", command[0]);
            assert_eq!(o.status.code(), Some(1), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: one line expected: {err}");
            assert!(err.starts_with(&format!("error: {path}: {at}: ")), "{what}: {err}");
            assert!(err.contains(needle), "{what}: {err}");
            assert!(o.stdout.is_empty(), "{what}: {}", stdout(&o));
        }
    }
    for command in &commands {
        let args = [&[command[0], "--resources", "demo/hub-spoke"][..], &tags, &command[1..]].concat();
        let o = netwatch(&args);
        assert_eq!(o.status.code(), Some(0), "{}: {}", command[0], stderr(&o));
    }
}

/// An NSG of `rules` inbound rules, the first with `sources` source
/// prefixes (10.x.y.0/24), in the ARM shape.
fn nsg_of(rules: usize, sources: usize) -> String {
    let prefixes: Vec<String> = (0..sources).map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256)).collect();
    let rules: Vec<String> = (0..rules)
        .map(|i| {
            let source = if i == 0 {
                format!("\"sourceAddressPrefixes\": [{}]", prefixes.join(","))
            } else {
                "\"sourceAddressPrefix\": \"*\"".to_string()
            };
            format!(
                r#"{{"name": "r{i}", "properties": {{"protocol": "Tcp", {source}, "sourcePortRange": "*",
                "destinationAddressPrefix": "*", "destinationPortRange": "443", "access": "Allow",
                "priority": {}, "direction": "Inbound"}}}}"#,
                100 + i
            )
        })
        .collect();
    format!(
        r#"{{"name": "nsg-big", "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-big",
        "type": "Microsoft.Network/networkSecurityGroups", "properties": {{"securityRules": [{}]}}}}"#,
        rules.join(",")
    )
}

/// Azure's limits (spec §1.8): at most 1,000 rules in an NSG, 4,000
/// addresses and ranges in a rule's source or destination. Beyond them the
/// file was not written by Azure: an error naming the path (they loaded).
#[test]
fn nsg_limits_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap().to_string();
        let o = netwatch(&["topology", "--resources", &path, "-g", "rg"]);
        (o, path)
    };
    for (name, text, needles) in [
        (
            "rules.json",
            nsg_of(1001, 1),
            [": properties.securityRules: ", "1,001 rules; Azure allows at most 1,000 in an NSG"],
        ),
        (
            "sources.json",
            nsg_of(1, 4001),
            [
                ": properties.securityRules[0].properties.sourceAddressPrefixes: ",
                "4,001 addresses and ranges; Azure allows at most 4,000 in a rule's source",
            ],
        ),
    ] {
        let (o, path) = load(name, text);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with(&format!("error: {path}")), "{name}: {err}");
        for n in needles {
            assert!(err.contains(n), "{name}: error lacks {n:?}: {err}");
        }
    }
    // At the limits, it loads.
    for (name, text) in [("rules-1000.json", nsg_of(1000, 1)), ("sources-4000.json", nsg_of(1, 4000))] {
        let (o, _) = load(name, text);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
    }
}

/// A huge bad value is quoted in part: its first 64 characters and its
/// length (the error line repeated the whole megabyte).
#[test]
fn errors_quote_a_huge_value_in_part() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(1 << 20);
    let rule = |field: &str, value: &str| {
        let mut r = serde_json::json!({"name": "r", "properties": {"protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "443", "access": "Allow", "priority": 100, "direction": "Inbound"}});
        if field == "name" {
            r["name"] = value.into();
        } else {
            r["properties"][field] = value.into();
        }
        serde_json::json!({"name": "nsg-a", "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg-a",
            "type": "Microsoft.Network/networkSecurityGroups", "properties": {"securityRules": [r]}})
    };
    let digits = format!("10.{}", "1".repeat(1 << 20));
    let cases = [
        ("protocol", rule("protocol", &huge)),
        ("prefix", rule("sourceAddressPrefix", &digits)),
        ("port", rule("destinationPortRange", &huge)),
        ("name", rule("name", &huge)),
        (
            "vnet",
            serde_json::json!({"name": "v", "id": "/v/v", "type": "Microsoft.Network/virtualNetworks",
                "properties": {"addressSpace": {"addressPrefixes": [digits]}}}),
        ),
    ];
    for (name, json) in cases {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, json.to_string()).unwrap();
        let o = netwatch(&["topology", "--resources", path.to_str().unwrap(), "-g", "rg"]);
        let err = stderr(&o);
        let head: String = err.chars().take(300).collect();
        assert_eq!(o.status.code(), Some(1), "{name}: {head}");
        assert!(err.len() < 500, "{name}: {} bytes: {head}…", err.len());
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.contains("…(1048576 bytes)") || err.contains("…(1048579 bytes)"),
            "{name}: {err}"
        );
    }
}

/// A route table is checked when it is loaded (spec §5.3, the routing
/// crate's checks), so every command refuses a bad one, naming the file and
/// the JSON path of the field at fault: not only next-hop and
/// effective-routes, which build the routes, but also the commands that
/// only judge NSGs (whose `VirtualNetwork` tag takes the route prefixes)
/// or draw the topology.
/// A run of each command that loads resources, over the demo (arguments
/// after the command name; `--resources` and `--service-tags` added by the
/// caller).
const RESOURCE_COMMANDS: &[&[&str]] = &[
    &[
        "ip-flow-verify",
        "--vm",
        "vm-web1",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:443",
        "--remote",
        "52.178.4.10:50123",
    ],
    &["topology", "-g", "rg-spokes"],
    &["security-group-view", "--vm", "vm-web1"],
    &["effective-security-rules", "--nic", "nic-web1"],
    &["next-hop", "--vm", "vm-web1", "--source", "10.1.1.4", "--destination", "10.2.1.4"],
    &["effective-routes", "--nic", "nic-web1"],
];

#[test]
fn bad_route_tables_are_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let many = common::rt_web_with_routes(dir.path(), 401);
    let many = many.to_string_lossy().into_owned();
    let cases: Vec<(String, &str, &str)> = [
        (
            "rt-web-bad-next-hop-type.json",
            "properties.routes[0].properties.nextHopType",
            "nextHopType \"Bogus\" is not a known next hop type (expected VirtualNetworkGateway, VnetLocal, Internet, VirtualAppliance or None)",
        ),
        (
            "rt-web-peering-next-hop.json",
            "properties.routes[6].properties.nextHopType",
            "nextHopType VNetPeering is not allowed in a user-defined route",
        ),
        (
            "rt-web-endpoint-next-hop.json",
            "properties.routes[7].properties.nextHopType",
            "nextHopType VirtualNetworkServiceEndpoint is not allowed in a user-defined route",
        ),
        (
            "rt-web-bad-prefix.json",
            "properties.routes[2].properties.addressPrefix",
            "addressPrefix \"100.64.0.0/33\" is not a valid CIDR prefix",
        ),
        (
            "rt-web-ip-on-none.json",
            "properties.routes[3].properties.nextHopIpAddress",
            "nextHopIpAddress \"10.0.1.4\" is allowed only when nextHopType is VirtualAppliance",
        ),
        (
            "rt-web-appliance-without-ip.json",
            "properties.routes[1].properties.nextHopIpAddress",
            "nextHopIpAddress is required when nextHopType is VirtualAppliance",
        ),
        (
            "rt-web-dup-route-name.json",
            "properties.routes[8].name",
            "name is already used by routes[0]",
        ),
        (
            "rt-web-dup-prefix.json",
            "properties.routes[8].properties.addressPrefix",
            "addressPrefix 10.2.0.0/16 is already used by route to-app-via-fw",
        ),
    ]
    .into_iter()
    .map(|(f, at, needle)| (format!("tests/data/malformed/{f}"), at, needle))
    .chain([(many, "properties.routes", "401 routes, more than the limit of 400")])
    .collect();
    let commands = RESOURCE_COMMANDS;
    for (path, at, needle) in &cases {
        for command in commands {
            let mut args = vec![command[0], "--resources", "demo/hub-spoke", "--resources", path];
            args.extend(["--service-tags", "demo/ServiceTags_Demo.json"]);
            args.extend(&command[1..]);
            let o = netwatch(&args);
            let err = stderr(&o);
            let what = format!("{} with {path}", command[0]);
            assert_eq!(o.status.code(), Some(1), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: one line expected: {err}");
            assert!(
                err.starts_with(&format!("error: {path}: {at}: route table /subscriptions/")),
                "{what}: {err}"
            );
            assert!(err.contains("routeTables/rt-web: ") && err.contains(needle), "{what}: {err}");
            assert!(!err.contains("panicked"), "{what}: {err}");
        }
    }
    // The demo's own route tables load, and every command runs.
    for command in commands {
        let mut args = vec![
            command[0],
            "--resources",
            "demo/hub-spoke",
            "--service-tags",
            "demo/ServiceTags_Demo.json",
        ];
        args.extend(&command[1..]);
        let o = netwatch(&args);
        assert_eq!(o.status.code(), Some(0), "{}: {}", command[0], stderr(&o));
    }
}

/// The user routes of a subnet's table widen its `VirtualNetwork` tag
/// (spec Decisions 1); a route to a service tag the tags file lacks is an
/// error naming the file and JSON path of its addressPrefix, as it is for
/// next-hop, not a route silently left out of the tag.
#[test]
fn unknown_route_service_tag_is_an_error_for_the_virtual_network_tag() {
    let path = "tests/data/malformed/rt-app-unknown-tag.json";
    let commands: &[&[&str]] = &[
        &["security-group-view", "--vm", "vm-app1"],
        &["effective-security-rules", "--nic", "nic-app1"],
        &["next-hop", "--vm", "vm-app1", "--source", "10.2.1.4", "--destination", "10.1.1.4"],
    ];
    for command in commands {
        let mut args = vec![command[0], "--resources", "demo/hub-spoke", "--resources", path];
        args.extend(["--service-tags", "demo/ServiceTags_Demo.json"]);
        args.extend(&command[1..]);
        let o = netwatch(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", command[0]);
        assert_eq!(err.lines().count(), 1, "{}: {err}", command[0]);
        assert!(
            err.contains(&format!("{path}: properties.routes[1].properties.addressPrefix: route table "))
                && err.contains("route storage-direct: addressPrefix \"Storage.MarsCentral\" is not a known service tag"),
            "{}: {err}",
            command[0]
        );
    }
}

#[test]
fn bad_service_tags_file_names_the_entry() {
    let o = netwatch(&[
        "ip-flow-verify",
        "--resources",
        "demo/hub-spoke",
        "--service-tags",
        "tests/data/malformed/bad-service-tags.json",
        "--vm",
        "vm-web1",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:22",
        "--remote",
        "52.178.4.10:40000",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad-service-tags.json: values[0].properties.addressPrefixes[1]") && err.contains("13.65.160.16/99"),
        "{err}"
    );
}

#[test]
fn unknown_service_tag_names_nsg_rule_and_tag() {
    // Without --service-tags, the service tags in the rules are unknown.
    let o = netwatch(&[
        "ip-flow-verify",
        "--resources",
        "demo/hub-spoke",
        "--vm",
        "vm-web1",
        "--direction",
        "Outbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:5000",
        "--remote",
        "13.69.40.20:443",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"nsg-web-subnet\"") && err.contains("\"Allow-Storage-WestEurope-Out\"") && err.contains("\"Storage.WestEurope\""),
        "{err}"
    );
}

#[test]
fn unknown_target_lists_what_is_known() {
    let o = netwatch(&[
        "ip-flow-verify",
        "--resources",
        "demo/hub-spoke",
        "--vm",
        "vm-nope",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:22",
        "--remote",
        "1.2.3.4:5",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("vm-nope") && err.contains("vm-web1"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let o = netwatch(&[
        "ip-flow-verify",
        "--resources",
        "demo/hub-spoke",
        "--vm",
        "vm-web1",
        "--direction",
        "Sideways",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = netwatch(&["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
    // Missing or malformed options are usage errors too, caught before any
    // file is read.
    let pcap = "../shared/corpus/pcap/tcpdump__ssh.pcap";
    for args in [
        &[
            "ip-flow-verify",
            "--resources",
            "demo/hub-spoke",
            "--direction",
            "Inbound",
            "--protocol",
            "TCP",
            "--local",
            "10.1.1.4:22",
            "--remote",
            "1.2.3.4:5",
        ][..],
        &[
            "next-hop",
            "--resources",
            "demo/hub-spoke",
            "--source",
            "10.1.1.4",
            "--destination",
            "10.2.1.4",
        ],
        &["flows", "--tcp-idle-timeout", "0", pcap],
        &["flows", "--ipfix", "no-port", pcap],
        &[
            "evaluate",
            "--resources",
            "demo/hub-spoke",
            "--nic",
            "nic-web1",
            "--local",
            "not-a-cidr",
            pcap,
        ],
    ] {
        let o = netwatch(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    // Flow-log options without the flow logs they shape (they were
    // ignored without a word): each names the output it needs.
    let evaluate = ["evaluate", "--resources", "demo/hub-spoke", "--nic", "nic-web1", pcap];
    for (option, value, needs) in [
        ("--flow-log-version", "1", "--flow-logs <DIR>"),
        ("--flow-log-target", "nic", "--vnet-flow-logs <DIR>"),
        ("--flow-log-name", "fl", "--vnet-flow-logs <DIR>"),
        ("--flow-log-region", "westeurope", "--vnet-flow-logs <DIR>"),
    ] {
        for base in [
            &evaluate[..],
            &["capture", "-i", "lo", "-w", "/nonexistent/x.pcap", "--time-limit", "1"][..],
        ] {
            let o = netwatch(&[base, &[option, value]].concat());
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{base:?} {option}: {err}");
            assert!(err.contains(needs), "{base:?} {option}: {err}");
        }
    }
}

#[test]
fn missing_resource_path_is_an_error() {
    let o = netwatch(&["effective-security-rules", "--resources", "does/not/exist", "--nic", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("error: does/not/exist: "), "{}", stderr(&o));
    assert!(!Path::new("does").exists());
}

/// Each cause is said once, on one line (library errors that already print
/// their source are not followed by it again).
#[test]
fn missing_files_are_named_once() {
    let o = netwatch(&["effective-security-rules", "--resources", "does/not/exist", "--nic", "x"]);
    let e = stderr(&o);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
    let o = netwatch(&["flows", "no/such/capture.pcap"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("error: no/such/capture.pcap: "), "{e}");
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
}

/// Inputs of the wrong kind say what was expected: `-` (standard input,
/// which the captures take) for resources, a directory for the service tags.
#[test]
fn wrong_kinds_of_input_say_what_is_expected() {
    let o = netwatch(&["topology", "--resources", "-", "-g", "rg-hub"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("standard input is not read here"), "{}", stderr(&o));
    let o = netwatch(&[
        "topology",
        "--resources",
        "demo/hub-spoke",
        "--service-tags",
        "demo",
        "-g",
        "rg-hub",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("demo: is a directory: --service-tags takes one ServiceTags_*.json file"),
        "{}",
        stderr(&o)
    );
}

/// A resources directory with a symbolic link back up the tree loads once:
/// the same answer as the plain directory, no error from endless nesting.
#[test]
fn resources_directory_with_a_link_loop_loads_once() {
    let dir = std::env::temp_dir().join(format!("netwatch-cli-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("hub-spoke");
    let status = Command::new("cp")
        .arg("-r")
        .arg(common::root().join("demo/hub-spoke"))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    std::os::unix::fs::symlink("..", copy.join("rg-hub").join("back-up")).unwrap();
    let run = |res: &str| ssh_from_internet(res, true);
    let plain = run("demo/hub-spoke");
    let looped = run(copy.to_str().unwrap());
    assert!(looped.status.success(), "{}", stderr(&looped));
    assert_eq!(stdout(&looped), stdout(&plain));
    // Each file read once: `-v` reports how many.
    let files = |o: &Output| {
        let e = stderr(o);
        let f = e
            .split("files=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_string);
        f.unwrap_or_else(|| panic!("no files= in {e}"))
    };
    assert_eq!(files(&looped), files(&plain));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The views resolve tags and application security groups as evaluation
/// does: an unknown one is an error naming the NSG, the rule and the tag
/// (spec decision 4), not an empty expansion.
#[test]
fn views_refuse_unknown_tags() {
    for args in [
        &["effective-security-rules", "--resources", "demo/hub-spoke", "--nic", "nic-web1"][..],
        &["security-group-view", "--resources", "demo/hub-spoke", "--vm", "vm-web1"][..],
    ] {
        let o = netwatch(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("nsg-web-subnet")
                && err.contains("Allow-Storage-WestEurope-Out")
                && err.contains("unknown service tag \"Storage.WestEurope\""),
            "{err}"
        );
        // Where the tag is written, as jq addresses it.
        assert!(
            err.contains("demo/hub-spoke/rg-spokes/networkSecurityGroups.json: value[0].properties.securityRules[6].properties.destinationAddressPrefix: "),
            "{err}"
        );
    }
}

/// `--vm` and `--nic` together must agree.
#[test]
fn vm_and_nic_must_agree() {
    let o = netwatch(&[
        "ip-flow-verify",
        "--resources",
        "demo/hub-spoke",
        "--service-tags",
        "demo/ServiceTags_Demo.json",
        "--vm",
        "vm-app1",
        "--nic",
        "nic-web1",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:443",
        "--remote",
        "52.178.4.10:1000",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"nic-web1\" is not one of virtual machine \"vm-app1\"'s (nic-app1)"),
        "{err}"
    );
}

/// `topology` (spec §9): a VNet contains its subnets, a VM its NICs; a
/// subnet is associated with its NSG and route table, a NIC with its
/// subnet and NSG; every association points at a resource of the answer.
#[test]
fn topology_of_a_vnet_a_subnet_and_a_group() {
    let run = |target: &[&str]| -> serde_json::Value {
        let mut args = vec!["topology", "--resources", "demo/hub-spoke"];
        args.extend_from_slice(target);
        let o = netwatch(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let assocs = |v: &serde_json::Value, name: &str| -> Vec<(String, String)> {
        let r = v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        r["associations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["associationType"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let pair = |n: &str, t: &str| (n.to_string(), t.to_string());
    let web = run(&["--vnet", "vnet-web"]);
    let mut got = names(&web);
    got.sort();
    assert_eq!(
        got,
        [
            "nic-web1",
            "nic-web2",
            "nsg-web-nic",
            "nsg-web-subnet",
            "rt-web",
            "snet-web",
            "vm-web1",
            "vm-web2",
            "vnet-web"
        ]
    );
    assert_eq!(assocs(&web, "vnet-web"), [pair("snet-web", "Contains")]);
    assert_eq!(
        assocs(&web, "snet-web"),
        [pair("nsg-web-subnet", "Associated"), pair("rt-web", "Associated")]
    );
    assert_eq!(assocs(&web, "vm-web1"), [pair("nic-web1", "Contains")]);
    assert_eq!(
        assocs(&web, "nic-web1"),
        [pair("snet-web", "Associated"), pair("nsg-web-nic", "Associated")]
    );
    assert!(assocs(&web, "nsg-web-subnet").is_empty());
    let ids: Vec<&str> = web["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for r in web["resources"].as_array().unwrap() {
        assert_eq!(r["location"], "westeurope", "{r}");
        for a in r["associations"].as_array().unwrap() {
            assert!(ids.contains(&a["resourceId"].as_str().unwrap()), "{a} points outside the answer");
        }
    }
    // Azure's envelope: a GUID, times with 7 fractional digits.
    let id = web["id"].as_str().unwrap();
    assert_eq!(id.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "{id}");
    let t = web["createdDateTime"].as_str().unwrap();
    assert!(t.len() == 28 && t.ends_with('Z'), "{t}");
    assert_eq!(run(&["--vnet", "vnet-web"])["id"], web["id"], "same input, same id");
    // A subnet alone: no VNet resource.
    let db = run(&["--subnet", "vnet-app/snet-db"]);
    assert_eq!(names(&db)[0], "snet-db");
    assert!(!names(&db).contains(&"vnet-app".to_string()));
    assert!(names(&db).contains(&"nic-db1".to_string()));
    // A resource group: its VNets whole.
    let hub = run(&["-g", "rg-hub"]);
    assert_eq!(assocs(&hub, "vnet-hub").len(), 3, "{:?}", assocs(&hub, "vnet-hub"));
    // No target: a usage error; a group with no loaded resource: an error
    // naming the groups there are.
    let o = netwatch(&["topology", "--resources", "demo/hub-spoke"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = netwatch(&["topology", "--resources", "demo/hub-spoke", "-g", "rg-nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resource group \"rg-nope\" (groups: rg-hub, rg-spokes)"),
        "{}",
        stderr(&o)
    );
}

/// A bad capture after good ones: stdout holds whole lines only (no table,
/// no cut record), and the error says how many records are there.
#[test]
fn an_error_after_output_leaves_whole_lines_and_says_so() {
    let good = common::corpus("pcap-bulk/pcapplusplus__example.pcap");
    let bad = common::corpus("pcap-malformed/libpcap__pcapng-invalid-vers-1.pcapng");
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    for _ in 0..3 {
        let o = netwatch(&["flows", good, good, good, bad]);
        assert_eq!(o.status.code(), Some(1));
        let out = stdout(&o);
        let lines: Vec<&str> = out.lines().collect();
        assert!(out.is_empty() || out.ends_with('\n'));
        for l in &lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        }
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("unsupported pcapng section version"), "{err}");
        if !lines.is_empty() {
            assert!(
                err.contains(&format!("the {} flow records ended before it are on stdout", lines.len())),
                "{err}"
            );
        }
    }
    let o = netwatch(&["flows", bad, "-o", "table"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "", "no table header for a failed run");
    // `evaluate` too, whose first flows the decoding thread tracks while the
    // resources load: the records it tracked reach stdout before the error.
    // (Each copy starts before the previous one ended: a capture of its
    // own, whose flows end when the next begins.)
    let args = [&["evaluate"], common::DEMO_WEB1, &["--local", "0.0.0.0/0", good, good, good, bad]].concat();
    let o = netwatch(&args);
    assert_eq!(o.status.code(), Some(1));
    let lines = stdout(&o).lines().count();
    assert!(lines > 0, "no records before the error");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("the {lines} flow records ended before it are on stdout")),
        "{err}"
    );
}

/// `-o jsonl` prints the elements of the response's main list as Azure
/// writes them (not the table's flattened rows).
#[test]
fn jsonl_lines_are_azure_objects() {
    let res = ["--resources", "demo/hub-spoke", "--service-tags", "demo/ServiceTags_Demo.json"];
    let o = netwatch(&[&["topology"][..], &res, &["--subnet", "vnet-app/snet-db", "-o", "jsonl"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    for l in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["id"].as_str().is_some_and(|id| id.starts_with("/subscriptions/")), "{l}");
        assert!(v["associations"].is_array(), "{l}");
    }
    let o = netwatch(
        &[
            &["connectivity-check"][..],
            &res,
            &[
                "--source-vm",
                "vm-web1",
                "--dest-vm",
                "vm-app1",
                "--dest-port",
                "8080",
                "-o",
                "jsonl",
            ],
        ]
        .concat(),
    );
    let hops: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(hops.len(), 3);
    assert!(hops.iter().all(|h| h["nextHopIds"].is_array() && h["issues"].is_array()));
}

/// Missing or misplaced options that clap cannot see are usage errors too.
#[test]
fn semantic_usage_errors_exit_2() {
    let res = ["--resources", "demo/hub-spoke"];
    for args in [
        vec!["capture", "-i", "lo", "--time-limit", "1"],
        vec!["capture", "-i", "lo", "--rotate-bytes", "100", "-w", "/dev/null"],
        [
            &["connectivity-check"][..],
            &res,
            &["--source-vm", "vm-web1", "--dest-address", "10.2.2.4"],
        ]
        .concat(),
        [
            &["connectivity-check"][..],
            &res,
            &[
                "--source-vm",
                "vm-web1",
                "--dest-address",
                "10.2.2.4",
                "--protocol",
                "Icmp",
                "--dest-port",
                "1",
            ],
        ]
        .concat(),
    ] {
        let o = netwatch(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error: "), "{args:?}: {}", stderr(&o));
    }
}

/// `topology -g` draws every loaded resource of the group: gateways (with
/// their GatewaySubnet), connections (with their gateways), local network
/// gateways and application security groups too; `--vnet` the VNet's
/// gateway and its connections.
#[test]
fn topology_of_a_group_has_its_gateways_connections_and_asgs() {
    let names = |args: &[&str]| -> Vec<(String, Vec<String>)> {
        let o = netwatch(&[&["topology", "--resources", "demo/hub-spoke"][..], args].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let assoc = r["associations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["name"].as_str().unwrap().to_string())
                    .collect();
                (r["name"].as_str().unwrap().to_string(), assoc)
            })
            .collect()
    };
    let hub = names(&["-g", "rg-hub"]);
    let get = |list: &[(String, Vec<String>)], n: &str| list.iter().find(|(x, _)| x == n).map(|(_, a)| a.clone());
    assert_eq!(get(&hub, "vgw-hub"), Some(vec!["GatewaySubnet".to_string()]));
    assert_eq!(get(&hub, "cn-onprem"), Some(vec!["vgw-hub".to_string(), "lng-onprem".to_string()]));
    assert_eq!(get(&hub, "lng-branch"), Some(vec![]));
    let spokes = names(&["-g", "rg-spokes"]);
    for asg in ["asg-web", "asg-app", "asg-db"] {
        assert!(get(&spokes, asg).is_some(), "{asg} missing: {spokes:?}");
    }
    let vnet = names(&["--vnet", "vnet-hub"]);
    assert!(get(&vnet, "vgw-hub").is_some() && get(&vnet, "cn-branch").is_some(), "{vnet:?}");
    // Another VNet draws no gateway.
    assert!(get(&names(&["--vnet", "vnet-web"]), "vgw-hub").is_none());
}

/// An application security group's members are NICs of the evaluated NIC's
/// VNet (spec §1.7). nicA's subnet NSG denies inbound from asg-app; the
/// group's members are nicA3 (10.0.1.6, vnA) and nicC (10.0.1.5, in vnC,
/// not peered, the same 10.0.0.0/16). 10.0.1.5 in vnA is nicA2, not a
/// member: every command that applies the rule lets it in, 10.0.1.6 not.
#[test]
fn asg_members_of_another_vnet_are_not_matched() {
    let res = "tests/data/asg-unpeered-vnets";
    let run = |args: &[&str]| -> serde_json::Value {
        let o = netwatch(&[args, &["--resources", res]].concat());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let allowed = ("Allow", "defaultSecurityRules/AllowVnetInBound");
    let denied = ("Deny", "securityRules/deny-from-app");
    for (remote, want) in [("10.0.1.5", allowed), ("10.0.1.6", denied)] {
        let remote = format!("{remote}:5000");
        let v = run(&[
            "ip-flow-verify",
            "--nic",
            "nicA",
            "--direction",
            "Inbound",
            "--protocol",
            "TCP",
            "--local",
            "10.0.1.4:80",
            "--remote",
            &remote,
        ]);
        assert_eq!(
            (v["access"].as_str(), v["ruleName"].as_str()),
            (Some(want.0), Some(want.1)),
            "{remote}: {v}"
        );
    }
    // The views expand the group to the member of vnA alone.
    let expansion = |rules: &serde_json::Value| {
        let rules = rules.as_array().unwrap();
        let r = rules.iter().find(|r| r["name"] == "securityRules/deny-from-app").unwrap();
        r["expandedSourceAddressPrefix"].clone()
    };
    let v = run(&["effective-security-rules", "--nic", "nicA"]);
    assert_eq!(
        expansion(&v["value"][0]["effectiveSecurityRules"]),
        serde_json::json!(["10.0.1.6/32"])
    );
    let v = run(&["security-group-view", "--vm", "vmA"]);
    let effective = &v["networkInterfaces"][0]["securityRuleAssociations"]["effectiveSecurityRules"];
    assert_eq!(expansion(effective), serde_json::json!(["10.0.1.6/32"]));
    // evaluate: a replay of both senders' SYNs on nicA.
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("asg.pcap");
    let mut g = netwatch_capture::synth::Synth::new();
    let t0 = 1_795_860_000 * 1_000_000_000;
    g.tcp_segment(t0, "10.0.1.5:5000".parse().unwrap(), "10.0.1.4:80".parse().unwrap(), "S", 0);
    g.tcp_segment(
        t0 + 1_000_000,
        "10.0.1.6:5000".parse().unwrap(),
        "10.0.1.4:80".parse().unwrap(),
        "S",
        0,
    );
    g.write_pcap(std::fs::File::create(&pcap).unwrap()).unwrap();
    let o = netwatch(&[
        "evaluate",
        "--resources",
        res,
        "--nic",
        "nicA",
        pcap.to_str().unwrap(),
        "-o",
        "jsonl",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let verdicts: Vec<_> = rows
        .iter()
        .map(|r| (r["initiator"].as_str(), r["access"].as_str(), r["ruleName"].as_str()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (Some("10.0.1.5"), Some(allowed.0), Some(allowed.1)),
            (Some("10.0.1.6"), Some(denied.0), Some(denied.1))
        ]
    );
    // connectivity-check from each sender to nicA's port 80.
    for (source, connected) in [("nicA2", "Connected"), ("nicA3", "Disconnected")] {
        let v = run(&[
            "connectivity-check",
            "--source-nic",
            source,
            "--dest-address",
            "10.0.1.4",
            "--dest-port",
            "80",
        ]);
        assert_eq!(v["connectionStatus"], connected, "{source}: {v}");
    }
}

/// A reference to a resource that is not loaded (the NIC's or the subnet's
/// NSG, the IP configuration's subnet, the subnet's route table, a connected
/// peering's remote VNet when the peering does not give its address space),
/// or an IP configuration without subnet, is an error naming the file and
/// the JSON path of the reference, exit 1.
#[test]
fn dangling_references_name_file_and_path() {
    let nsg = "network security group \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/ghost\" is not among the loaded resources (load it with --resources)";
    let peer = "peering \"to-ghost\" is Connected, but the address space of its remote virtual network \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/ghost-vn\" is unknown (load that virtual network with --resources, or give the peering's remoteAddressSpace.addressPrefixes)";
    let ifv = [
        "ip-flow-verify",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.0.1.4:80",
        "--remote",
        "10.0.1.5:5000",
    ];
    let cases: &[(&str, &[&str], String)] = &[
        ("nic-nsg.json", &ifv, format!("value[1].properties.networkSecurityGroup.id: {nsg}")),
        ("nic-nsg.json", &["effective-security-rules"], format!("value[1].properties.networkSecurityGroup.id: {nsg}")),
        ("subnet-nsg.json", &ifv, format!("[0].properties.subnets[0].properties.networkSecurityGroup.id: {nsg}")),
        (
            "nic-subnet.json",
            &["effective-routes"],
            "[1].properties.ipConfigurations[0].properties.subnet.id: subnet \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vn/subnets/other\" is not among the loaded resources: virtual network \"vn\" as loaded has no subnet \"other\"".into(),
        ),
        (
            "nic-without-subnet.json",
            &ifv,
            "[1].properties.ipConfigurations[0]: IP configuration \"ipconfig1\" of network interface \"nic1\" has no subnet".into(),
        ),
        (
            "route-table.json",
            &["effective-routes"],
            "[0].subnets[0].routeTable.id: route table \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/routeTables/ghost-rt\" is not among the loaded resources (load it with --resources)".into(),
        ),
        // Its user routes make part of `VirtualNetwork`: rules cannot be judged without it.
        (
            "route-table.json",
            &ifv,
            "[0].subnets[0].routeTable.id: route table \"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/routeTables/ghost-rt\" is not among the loaded resources (load it with --resources)".into(),
        ),
        // A connected peering to a VNet that is not loaded, without
        // remoteAddressSpace: its routes and its part of `VirtualNetwork`
        // are unknown.
        ("peering.json", &["effective-routes"], format!("[0].virtualNetworkPeerings[2]: {peer}")),
        (
            "peering.json",
            &["next-hop", "--source", "10.0.1.4", "--destination", "10.9.0.1"],
            format!("[0].virtualNetworkPeerings[2]: {peer}"),
        ),
        ("peering.json", &ifv, format!("[0].virtualNetworkPeerings[2]: {peer}")),
    ];
    for (file, command, want) in cases {
        let path = format!("tests/data/dangling/{file}");
        let o = netwatch(&[*command, &["--resources", &path, "--nic", "nic1"]].concat());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.contains(&format!("{path}: {want}")), "{file} {command:?}: {err}");
    }
}

/// `*` as the source port of IP flow verify (spec §3: "Support for * for
/// the source port, which depends on the direction"): a rule on some source
/// ports does not decide a flow that stands for all of them; `*` as the
/// destination port is a usage error.
#[test]
fn ip_flow_verify_takes_any_source_port() {
    let res = "tests/data/source-ports";
    let verify = |dir: &str, proto: &str, local: &str, remote: &str, extra: &[&str]| {
        netwatch(
            &[
                &[
                    "ip-flow-verify",
                    "--resources",
                    res,
                    "--nic",
                    "nic",
                    "--direction",
                    dir,
                    "--protocol",
                    proto,
                    "--local",
                    local,
                    "--remote",
                    remote,
                ],
                extra,
            ]
            .concat(),
        )
    };
    let decision = |o: &Output| -> (String, String) {
        assert!(o.status.success(), "{}", stderr(o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["access"].as_str().unwrap().into(), v["ruleName"].as_str().unwrap().into())
    };
    let pair = |a: &str, r: &str| (a.to_string(), r.to_string());
    // Inbound: the remote port is the source port.
    let o = verify("Inbound", "TCP", "10.0.1.4:80", "52.1.1.1:50000", &[]);
    assert_eq!(decision(&o), pair("Deny", "securityRules/deny-web-from-high-ports"));
    let o = verify("Inbound", "TCP", "10.0.1.4:80", "52.1.1.1:*", &[]);
    assert_eq!(decision(&o), pair("Allow", "securityRules/allow-web"));
    // Outbound: the local port is.
    let o = verify("Outbound", "UDP", "10.0.1.4:53", "8.8.8.8:53", &[]);
    assert_eq!(decision(&o), pair("Deny", "securityRules/deny-dns-from-low-ports"));
    let o = verify("Outbound", "UDP", "10.0.1.4:*", "8.8.8.8:53", &["--explain"]);
    assert_eq!(decision(&o), pair("Allow", "defaultSecurityRules/AllowInternetOutBound"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["flow"]["sourcePort"], "*", "{v}");
    let first = &v["evaluatedNetworkSecurityGroups"][0]["rulesEvaluationResult"][0];
    assert_eq!(first["name"], "securityRules/deny-dns-from-low-ports");
    assert_eq!(first["sourcePortMatched"], false, "{first}");
    assert_eq!(first["destinationPortMatched"], true, "{first}");
    // `*` as the destination port, either way round, and a bad port.
    for (dir, local, remote, flag) in [
        ("Inbound", "10.0.1.4:*", "52.1.1.1:50000", "--local"),
        ("Outbound", "10.0.1.4:5000", "8.8.8.8:*", "--remote"),
    ] {
        let o = verify(dir, "TCP", local, remote, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("{flag} is the destination of an {dir} flow")),
            "{}",
            stderr(&o)
        );
    }
    let o = verify("Inbound", "TCP", "10.0.1.4:80", "52.1.1.1:x", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // IPv6 in brackets parses with `*` too (the NIC has no IPv6 address:
    // an error naming it, not a usage error).
    let o = verify("Inbound", "TCP", "[2001:db8::4]:80", "[2001:db8::5]:*", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// Parses RFC 4180 CSV (quoted fields with `""`, commas and line breaks
/// inside quotes) into rows of fields.
fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field, mut quoted, mut chars) = (Vec::new(), Vec::new(), String::new(), false, s.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

/// `-o csv` on the resource commands: the table's rows and columns, cells
/// in full (lists not cut, ids not shortened); the `--explain` traces of
/// ip-flow-verify and next-hop are tables too, a row per rule or route.
#[test]
fn resource_commands_write_csv_and_trace_tables() {
    let res = ["--resources", "demo/hub-spoke", "--service-tags", "demo/ServiceTags_Demo.json"];
    let run = |args: &[&str]| {
        let o = netwatch(&[args, &res].concat());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let csv = parse_csv(&run(&["effective-security-rules", "--nic", "nic-db1", "-o", "csv"]));
    assert_eq!(
        csv[0],
        [
            "NSG",
            "Name",
            "Priority",
            "Direction",
            "Access",
            "Protocol",
            "Source",
            "SourcePorts",
            "Destination",
            "DestinationPorts"
        ]
    );
    assert!(csv.iter().all(|r| r.len() == csv[0].len()), "{csv:?}");
    let sql = csv.iter().find(|r| r[1] == "securityRules/Allow-Sql-From-App").unwrap();
    assert!(sql[6].ends_with("/applicationSecurityGroups/asg-app"), "{sql:?}");
    // The JSON's rows, one for one.
    let json: serde_json::Value = serde_json::from_str(&run(&["effective-security-rules", "--nic", "nic-db1"])).unwrap();
    let rules: usize = json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["effectiveSecurityRules"].as_array().unwrap().len())
        .sum();
    assert_eq!(csv.len() - 1, rules);

    let csv = parse_csv(&run(&["effective-routes", "--nic", "nic-web1", "-o", "csv"]));
    let prefix = csv[0].iter().position(|h| h == "AddressPrefix").unwrap();
    assert!(csv.iter().skip(1).any(|r| r[prefix] == "10.2.0.0/16"), "{csv:?}");

    let flow = [
        "ip-flow-verify",
        "--vm",
        "vm-web1",
        "--direction",
        "Inbound",
        "--protocol",
        "TCP",
        "--local",
        "10.1.1.4:8081",
        "--remote",
        "52.178.4.10:40000",
        "--explain",
    ];
    let csv = parse_csv(&run(&[&flow[..], &["-o", "csv"]].concat()));
    assert_eq!(csv[0][..3], ["NSG", "AppliedTo", "Rule"]);
    let decision = csv[0].iter().position(|h| h == "Decision").unwrap();
    let decided: Vec<(&str, &str, &str)> = csv
        .iter()
        .skip(1)
        .filter(|r| !r[decision].is_empty())
        .map(|r| (r[0].as_str(), r[2].as_str(), r[decision].as_str()))
        .collect();
    assert_eq!(
        decided,
        [
            ("nsg-web-subnet", "securityRules/Allow-Web-Alt-In", "Allow"),
            ("nsg-web-nic", "securityRules/Deny-8081-In", "Deny")
        ]
    );
    let table = run(&[&flow[..], &["-o", "table"]].concat());
    assert!(!table.contains('{'), "{table}");
    assert_eq!(table.lines().count(), csv.len(), "{table}");

    let hops = run(&[
        "next-hop",
        "--vm",
        "vm-web1",
        "--source",
        "10.1.1.4",
        "--destination",
        "10.2.1.4",
        "--explain",
        "-o",
        "table",
    ]);
    let selected: Vec<&str> = hops.lines().filter(|l| l.contains("selected")).collect();
    assert!(
        selected.len() == 1 && selected[0].contains("10.2.0.0/16") && selected[0].contains("VirtualAppliance"),
        "{hops}"
    );
    assert!(hops.contains("lessSpecific winnerPrefix=10.2.0.0/16"), "{hops}");
}

/// A service endpoint's route is one row of `effective-routes -o csv` and
/// `-o table`, as a multi-prefix service-tag route is: CSV gives all its
/// prefixes in one quoted field, the table cuts the list and counts them
/// (spec §5.4 table row 10, §5.5: `addressPrefix` is an array).
#[test]
fn effective_routes_show_a_service_endpoint_in_one_row() {
    let run = |format: &str| {
        let o = netwatch(&[&["effective-routes"], common::DEMO_WEB1, &["-o", format]].concat());
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        stdout(&o)
    };
    let csv = parse_csv(&run("csv"));
    let column = |name: &str| csv[0].iter().position(|h| h == name).unwrap();
    let (prefix, hop, tags) = (column("AddressPrefix"), column("NextHopType"), column("DestinationServiceTags"));
    let rows: Vec<(&str, &str)> = csv
        .iter()
        .filter(|r| r.get(hop).is_some_and(|h| h == "VirtualNetworkServiceEndpoint"))
        .map(|r| (r[prefix].as_str(), r[tags].as_str()))
        .collect();
    assert_eq!(
        rows,
        [("13.69.40.16/28,13.95.96.176/28,13.95.240.16/28,2603:1020:207::/48", "")],
        "{csv:?}"
    );
    let table = run("table");
    let rows: Vec<&str> = table.lines().filter(|l| l.contains("VirtualNetworkServiceEndpoint")).collect();
    assert!(
        rows.len() == 1 && rows[0].contains("13.69.40.16/28,") && rows[0].contains("(4 items)"),
        "{table}"
    );
}
