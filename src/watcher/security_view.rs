//! Effective security rules (spec §6.2) and the security group view (§6.1).

use std::collections::BTreeMap;

use netwatch_rules::{Access, AddrSet, AddressContext, AddressPrefix, Direction, NetworkSecurityGroup, PortRange, SecurityRule};
use serde::Serialize;
use serde_json::Value;

use super::context::{find_vm, nics_of_vm, Attachment, NicView};
use super::WatcherError;
use crate::azure::{Environment, NetworkInterface};

/// `{"value": [EffectiveNetworkSecurityGroup]}`.
#[derive(Clone, Debug, Serialize)]
pub struct EffectiveNetworkSecurityGroupListResult {
    pub value: Vec<EffectiveNetworkSecurityGroup>,
}

/// `{"id": ...}` sub-resource.
#[derive(Clone, Debug, Serialize)]
pub struct SubResource {
    pub id: String,
}

/// Where an NSG is attached: exactly one of the fields is set.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveNetworkSecurityGroupAssociation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<SubResource>,
}

/// One NSG's effective rules for a NIC.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveNetworkSecurityGroup {
    pub network_security_group: SubResource,
    pub association: EffectiveNetworkSecurityGroupAssociation,
    pub effective_security_rules: Vec<EffectiveNetworkSecurityRule>,
    /// Each tag used by the rules and the prefixes it stands for.
    pub tag_map: BTreeMap<String, Vec<String>>,
}

/// `EffectiveNetworkSecurityRule`, normalised as Azure prints it: protocol
/// `All` for `*`, ports as `a-b`, `*` as `0.0.0.0/0`, names qualified.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveNetworkSecurityRule {
    pub name: String,
    pub protocol: String,
    pub source_port_range: Option<String>,
    pub destination_port_range: Option<String>,
    pub source_port_ranges: Vec<String>,
    pub destination_port_ranges: Vec<String>,
    pub source_address_prefix: Option<String>,
    pub destination_address_prefix: Option<String>,
    pub source_address_prefixes: Vec<String>,
    pub destination_address_prefixes: Vec<String>,
    pub expanded_source_address_prefix: Option<Vec<String>>,
    pub expanded_destination_address_prefix: Option<Vec<String>>,
    pub access: Access,
    pub priority: u32,
    pub direction: Direction,
}

fn ports(list: &[PortRange]) -> (Option<String>, Vec<String>) {
    let v: Vec<String> = list.iter().map(|p| p.to_string()).collect();
    let single = if v.len() == 1 { Some(v[0].clone()) } else { None };
    (single, v)
}

fn prefix_text(p: &AddressPrefix) -> String {
    match p {
        AddressPrefix::Any => "0.0.0.0/0".into(),
        AddressPrefix::Prefix(p) => p.to_string(),
        AddressPrefix::Tag(t) => t.clone(),
    }
}

/// Prefixes as written, and the expansion when a tag or ASG is involved.
fn addresses(
    ctx: &AddressContext<'_>,
    list: &[AddressPrefix],
    asgs: &[String],
    tag_map: &mut BTreeMap<String, Vec<String>>,
) -> (Option<String>, Vec<String>, Option<Vec<String>>) {
    if !asgs.is_empty() {
        let mut set = AddrSet::empty();
        for a in asgs {
            if let Some(m) = ctx.application_security_groups.get(&a.to_ascii_lowercase()) {
                set = set.union(m);
            }
        }
        let expanded = set.to_prefixes().iter().map(|p| p.to_string()).collect();
        let single = if asgs.len() == 1 { Some(asgs[0].clone()) } else { None };
        return (single, asgs.to_vec(), Some(expanded));
    }
    let written: Vec<String> = list.iter().map(prefix_text).collect();
    let has_tag = list.iter().any(|p| matches!(p, AddressPrefix::Tag(_)));
    let expanded = if has_tag {
        let mut set = AddrSet::empty();
        for p in list {
            match p {
                AddressPrefix::Tag(t) => {
                    if let Some(s) = ctx.tag(t) {
                        tag_map
                            .entry(t.clone())
                            .or_insert_with(|| s.to_prefixes().iter().map(|p| p.to_string()).collect());
                        set = set.union(&s);
                    }
                }
                AddressPrefix::Prefix(p) => set = set.union(&AddrSet::from_prefix(*p)),
                AddressPrefix::Any => set = set.union(&AddrSet::any()),
            }
        }
        Some(set.to_prefixes().iter().map(|p| p.to_string()).collect())
    } else {
        None
    };
    let single = if written.len() == 1 { Some(written[0].clone()) } else { None };
    (single, written, expanded)
}

/// One rule in effective form.
pub fn effective_rule(
    ctx: &AddressContext<'_>,
    r: &SecurityRule,
    tag_map: &mut BTreeMap<String, Vec<String>>,
) -> EffectiveNetworkSecurityRule {
    let (spr, sprs) = ports(&r.source_port_ranges);
    let (dpr, dprs) = ports(&r.destination_port_ranges);
    let (sap, saps, esap) = addresses(ctx, &r.source_address_prefixes, &r.source_application_security_groups, tag_map);
    let (dap, daps, edap) = addresses(
        ctx,
        &r.destination_address_prefixes,
        &r.destination_application_security_groups,
        tag_map,
    );
    EffectiveNetworkSecurityRule {
        name: r.qualified_name(),
        protocol: match r.protocol {
            netwatch_rules::Protocol::Any => "All".into(),
            p => p.as_str().into(),
        },
        source_port_range: spr,
        destination_port_range: dpr,
        source_port_ranges: sprs,
        destination_port_ranges: dprs,
        source_address_prefix: sap,
        destination_address_prefix: dap,
        source_address_prefixes: saps,
        destination_address_prefixes: daps,
        expanded_source_address_prefix: esap,
        expanded_destination_address_prefix: edap,
        access: r.access,
        priority: r.priority,
        direction: r.direction,
    }
}

/// The NSG's rules in effective form. An unknown tag or application
/// security group is an error naming the NSG, the rule and the tag (spec,
/// decision 4), as in evaluation, not an empty expansion.
fn effective_rules(
    view: &NicView<'_>,
    nsg: &NetworkSecurityGroup,
    tag_map: &mut BTreeMap<String, Vec<String>>,
) -> Result<Vec<EffectiveNetworkSecurityRule>, WatcherError> {
    let ctx = &view.addresses;
    ctx.resolve(nsg).map_err(|e| WatcherError::locate(view.env, nsg, e))?;
    let mut user: Vec<&SecurityRule> = nsg.security_rules.iter().collect();
    user.sort_by_key(|r| (r.direction == Direction::Outbound, r.priority));
    Ok(user
        .into_iter()
        .chain(nsg.default_security_rules.iter())
        .map(|r| effective_rule(ctx, r, tag_map))
        .collect())
}

fn group(view: &NicView<'_>, attachment: Attachment, nsg: &NetworkSecurityGroup) -> Result<EffectiveNetworkSecurityGroup, WatcherError> {
    let mut tag_map = BTreeMap::new();
    let rules = effective_rules(view, nsg, &mut tag_map)?;
    let id = SubResource {
        id: view.applied_to(attachment).to_string(),
    };
    Ok(EffectiveNetworkSecurityGroup {
        network_security_group: SubResource { id: nsg.id.clone() },
        association: match attachment {
            Attachment::Subnet => EffectiveNetworkSecurityGroupAssociation {
                subnet: Some(id),
                network_interface: None,
            },
            Attachment::NetworkInterface => EffectiveNetworkSecurityGroupAssociation {
                subnet: None,
                network_interface: Some(id),
            },
        },
        effective_security_rules: rules,
        tag_map,
    })
}

/// `NetworkInterfaces_ListEffectiveNetworkSecurityGroups` for one NIC: one
/// entry per NSG (subnet first, then NIC), default rules included in each.
pub fn effective_security_rules(
    env: &Environment,
    nic: &NetworkInterface,
) -> Result<EffectiveNetworkSecurityGroupListResult, WatcherError> {
    let view = NicView::for_nic(env, nic, None)?;
    let mut value = Vec::new();
    if let Some(n) = view.subnet_nsg {
        value.push(group(&view, Attachment::Subnet, n)?);
    }
    if let Some(n) = view.nic_nsg {
        value.push(group(&view, Attachment::NetworkInterface, n)?);
    }
    Ok(EffectiveNetworkSecurityGroupListResult { value })
}

/// `SecurityGroupViewResult`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupViewResult {
    pub network_interfaces: Vec<SecurityGroupNetworkInterface>,
}

/// One NIC of the view.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupNetworkInterface {
    pub id: String,
    pub security_rule_associations: SecurityRuleAssociations,
}

/// The NSG rules that apply to a NIC, by where they come from.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleAssociations {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interface_association: Option<Association>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_association: Option<Association>,
    pub default_security_rules: Vec<Value>,
    pub effective_security_rules: Vec<EffectiveNetworkSecurityRule>,
}

/// `{id, securityRules[]}`: the user rules of the NSG on a NIC or subnet.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Association {
    pub id: String,
    pub security_rules: Vec<Value>,
}

/// `NetworkWatchers_GetVMSecurityRules`: per NIC of the VM, the user rules
/// of the NIC's and the subnet's NSG, the default rules, and the effective
/// rules (subnet NSG's then NIC NSG's).
pub fn security_group_view(env: &Environment, vm: &str) -> Result<SecurityGroupViewResult, WatcherError> {
    let vm = find_vm(env, vm)?;
    let nics = nics_of_vm(env, vm);
    if nics.is_empty() {
        return Err(WatcherError::NotFound(format!(
            "virtual machine {:?}: none of its network interfaces is among the loaded resources",
            vm.name
        )));
    }
    let mut out = Vec::new();
    for nic in nics {
        let view = NicView::for_nic(env, nic, None)?;
        let assoc = |id: &str, nsg: &NetworkSecurityGroup| Association {
            id: id.to_string(),
            security_rules: env.nsg_json(&nsg.id).map(|j| j.security_rules()).unwrap_or_default(),
        };
        let defaults = view
            .nic_nsg
            .or(view.subnet_nsg)
            .and_then(|n| env.nsg_json(&n.id))
            .map(|j| j.default_security_rules())
            .unwrap_or_default();
        let mut effective = Vec::new();
        let mut tag_map = BTreeMap::new();
        for n in view.subnet_nsg.into_iter().chain(view.nic_nsg) {
            effective.extend(effective_rules(&view, n, &mut tag_map)?);
        }
        out.push(SecurityGroupNetworkInterface {
            id: nic.id.clone(),
            security_rule_associations: SecurityRuleAssociations {
                network_interface_association: view.nic_nsg.map(|n| assoc(&nic.id, n)),
                subnet_association: view.subnet_nsg.map(|n| assoc(&view.subnet.id, n)),
                default_security_rules: defaults,
                effective_security_rules: effective,
            },
        });
    }
    Ok(SecurityGroupViewResult { network_interfaces: out })
}
