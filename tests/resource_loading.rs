//! Loading resource files: which copy wins when a resource comes twice
//! (VNets, their subnets given inline and on their own, learned-route
//! dumps), the encodings Windows tools write, and error paths as jq would
//! write them.

mod common;

use std::path::PathBuf;

use netwatch::Environment;

const VNET: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet1";

fn vnet(subnet_nsg: &str) -> String {
    format!(
        r#"{{"name":"vnet1","id":"{VNET}","type":"Microsoft.Network/virtualNetworks",
            "properties":{{"addressSpace":{{"addressPrefixes":["10.0.0.0/16"]}},
            "subnets":[{{"name":"s1","id":"{VNET}/subnets/s1","properties":{{"addressPrefix":"10.0.1.0/24",
            "networkSecurityGroup":{{"id":"/nsg/{subnet_nsg}"}}}}}}]}}}}"#
    )
}

fn subnet(name: &str, prefix: &str, nsg: &str) -> String {
    format!(
        r#"{{"name":"{name}","id":"{VNET}/subnets/{name}","type":"Microsoft.Network/virtualNetworks/subnets",
            "properties":{{"addressPrefix":"{prefix}","networkSecurityGroup":{{"id":"/nsg/{nsg}"}}}}}}"#
    )
}

/// A fresh directory with `files` (name, contents), loaded in name order.
fn dir_with(test: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netwatch-resource-loading-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for (name, body) in files {
        std::fs::write(d.join(name), body).unwrap();
    }
    d
}

fn subnet_nsg(env: &Environment, name: &str) -> Option<String> {
    env.subnet(&format!("{VNET}/subnets/{name}"))
        .and_then(|(_, s)| s.network_security_group_id.clone())
}

#[test]
fn of_two_copies_of_a_subnet_the_one_loaded_last_wins() {
    // Two copies of the VNet, then the subnet on its own: the subnet's copy
    // is the last (it attached to the first VNet copy, which was dropped).
    let (v, s) = (vnet("nsg-allow"), subnet("s1", "10.0.1.0/24", "nsg-deny"));
    let d = dir_with(
        "a",
        &[
            ("a_vnet.json", v.as_bytes()),
            ("b_vnet.json", v.as_bytes()),
            ("c_subnet.json", s.as_bytes()),
        ],
    );
    let env = Environment::load(&[&d]).unwrap();
    assert_eq!(subnet_nsg(&env, "s1").as_deref(), Some("/nsg/nsg-deny"));
    // The subnet first, the VNet after: the VNet's own copy wins.
    let d = dir_with("b", &[("a_subnet.json", s.as_bytes()), ("b_vnet.json", v.as_bytes())]);
    let env = Environment::load(&[&d]).unwrap();
    assert_eq!(subnet_nsg(&env, "s1").as_deref(), Some("/nsg/nsg-allow"));
    // A subnet only given on its own joins the VNet, whatever the order,
    // and whatever the number of VNet copies.
    let s2 = subnet("s2", "10.0.2.0/24", "nsg-x");
    let d = dir_with(
        "c",
        &[
            ("a_subnet.json", s2.as_bytes()),
            ("b_vnet.json", v.as_bytes()),
            ("c_vnet.json", v.as_bytes()),
        ],
    );
    let env = Environment::load(&[&d]).unwrap();
    assert_eq!(subnet_nsg(&env, "s2").as_deref(), Some("/nsg/nsg-x"));
    assert_eq!(subnet_nsg(&env, "s1").as_deref(), Some("/nsg/nsg-allow"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_later_learned_routes_dump_of_a_gateway_replaces_the_earlier() {
    let demo = common::root().join("demo/hub-spoke");
    let dump = demo.join("rg-hub/vgw-hub-learned-routes.json");
    let once = Environment::load(&[&demo]).unwrap();
    let twice = Environment::load(&[demo.as_path(), dump.as_path()]).unwrap();
    assert!(!once.learned_routes.is_empty());
    assert_eq!(twice.learned_routes.len(), once.learned_routes.len());
}

fn load_bytes(test: &str, body: &[u8]) -> Result<Environment, String> {
    let d = dir_with(test, &[("nsg.json", body)]);
    let r = Environment::load(&[&d.join("nsg.json")]).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&d);
    r
}

#[test]
fn utf8_with_a_byte_order_mark_and_utf16_files_load() {
    let text = std::fs::read_to_string(common::root().join("tests/data/nsg-web-nic-strict.json")).unwrap();
    let plain = load_bytes("plain", text.as_bytes()).unwrap();
    let bom = load_bytes("bom", &[&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat()).unwrap();
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    let utf16 = load_bytes("utf16", &utf16).unwrap();
    for env in [&bom, &utf16] {
        assert_eq!(env.network_security_groups, plain.network_security_groups);
    }
    // Neither UTF-8 nor marked UTF-16: the error says where and what.
    let err = load_bytes("latin1", b"{\"name\": \"caf\xe9\"}").unwrap_err();
    assert!(
        err.contains("nsg.json") && err.contains("byte offset 13") && err.contains("expected JSON text in UTF-8"),
        "{err}"
    );
}

#[test]
fn a_missing_top_level_key_is_placed_where_arm_puts_it() {
    let nsg = br#"{"name":"n","id":"/nsg/n","type":"Microsoft.Network/networkSecurityGroups",
        "properties":{"securityRules":[{"properties":{"protocol":"Tcp","access":"Allow","priority":100,"direction":"Inbound"}}]}}"#;
    let err = load_bytes("noname", nsg).unwrap_err();
    assert!(err.contains("properties.securityRules[0].name: missing"), "{err}");
    // A key in another case is named as the file writes it.
    let nsg = br#"{"name":"n","id":"/nsg/n","type":"Microsoft.Network/networkSecurityGroups",
        "properties":{"securityRules":[{"name":"r","properties":{"protocol":"Tcp","access":"Allow","Priority":99,"direction":"Inbound"}}]}}"#;
    let err = load_bytes("case", nsg).unwrap_err();
    assert!(err.contains("properties.securityRules[0].properties.Priority:"), "{err}");
}

#[test]
fn properties_in_another_case_is_read_and_named_as_written() {
    // ARM keys match without case: `Properties` holds the fields as
    // `properties` does (its routes were ignored, and next hop fell back to
    // the system routes).
    let rt = br#"{"name":"rt","id":"/rt/rt","type":"Microsoft.Network/routeTables",
        "Properties":{"routes":[{"name":"r","Properties":{"addressPrefix":"10.2.0.0/16","nextHopType":"VirtualAppliance","nextHopIpAddress":"10.0.1.4"}}]}}"#;
    let env = load_bytes("props-case", rt).unwrap();
    let routes = &env.route_tables[0].routes;
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].address_prefix.as_str(), routes[0].next_hop_type.as_str()),
        ("10.2.0.0/16", "VirtualAppliance")
    );
    // Errors spell it as the file does.
    let rt = br#"{"name":"rt","id":"/rt/rt","type":"Microsoft.Network/routeTables",
        "Properties":{"routes":[{"name":"r","Properties":{"addressPrefix":"10.2.0.0/16"}}]}}"#;
    let err = load_bytes("props-case-err", rt).unwrap_err();
    assert!(
        err.contains("Properties.routes[0].Properties.nextHopType: route table /rt/rt: route r: missing"),
        "{err}"
    );
}

#[test]
fn a_list_under_value_in_another_case_is_read() {
    // `{"VALUE": [...]}` was one resource of no type, skipped: the routes
    // were lost and next hop fell back to the system routes.
    let dump = br#"{"VALUE":[{"localAddress":"10.0.255.30","network":"10.70.0.0/16","nextHop":"192.168.255.1","origin":"EBgp"}]}"#;
    let env = load_bytes("value-case", dump).unwrap();
    assert_eq!(env.learned_routes.len(), 1);
    assert_eq!(env.learned_routes[0].network.to_string(), "10.70.0.0/16");
    // An element that is neither a resource nor a learned route is named.
    let dump = br#"{"VALUE":[{"localAddress":"10.0.255.30","nextHop":"192.168.255.1","origin":"EBgp"}]}"#;
    let err = load_bytes("value-case-err", dump).unwrap_err();
    assert!(err.contains("nsg.json: VALUE[0]: cannot tell what resource this is"), "{err}");
    assert!(err.contains("(missing network)"), "{err}");
}

/// A subnet on its own must lie in the address space of its VNet (Azure
/// refuses to create one outside it): the error names the subnet's file
/// and the JSON path of its prefix. Only the copy used is checked: a
/// standalone copy that the VNet's later copy replaces is not.
#[test]
fn a_subnet_on_its_own_outside_its_vnets_address_space_is_an_error() {
    let v = vnet("nsg-allow");
    let outside = subnet("s2", "10.5.0.0/24", "nsg-x");
    let d = dir_with("outside", &[("a_vnet.json", v.as_bytes()), ("b_subnet.json", outside.as_bytes())]);
    let err = Environment::load(&[&d]).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&d);
    assert!(
        err.contains(
            "b_subnet.json: properties.addressPrefix: \"10.5.0.0/24\" of subnet \"s2\" is not within the address space of virtual network \"vnet1\" (10.0.0.0/16)"
        ),
        "{err}"
    );
    // The subnet first, the VNet after: the VNet's own copy of s1 (inside
    // its space) is the one used.
    let old = subnet("s1", "10.9.0.0/24", "nsg-deny");
    let d = dir_with("replaced", &[("a_subnet.json", old.as_bytes()), ("b_vnet.json", v.as_bytes())]);
    let env = Environment::load(&[&d]).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    assert_eq!(subnet_nsg(&env, "s1").as_deref(), Some("/nsg/nsg-allow"));
    // Inside the space: it joins the VNet.
    let inside = subnet("s2", "10.0.2.0/24", "nsg-x");
    let d = dir_with("inside", &[("a_vnet.json", v.as_bytes()), ("b_subnet.json", inside.as_bytes())]);
    let env = Environment::load(&[&d]).unwrap();
    assert_eq!(subnet_nsg(&env, "s2").as_deref(), Some("/nsg/nsg-x"));
    let _ = std::fs::remove_dir_all(&d);
}
