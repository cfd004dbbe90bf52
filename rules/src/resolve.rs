//! Resolving rules for one NIC: tags and application security groups become
//! address sets, and each NSG becomes two ordered lists of [`ResolvedRule`]s.
//!
//! `VirtualNetwork` differs per NIC (its VNet, peerings, gateways, routes;
//! spec Decisions 1), so resolution happens in an [`AddressContext`] that the
//! caller builds for the NIC.

use std::collections::HashMap;

use crate::addr::AddrSet;
use crate::error::ResolveError;
use crate::flow::FlowKey;
use crate::model::{Access, AddressPrefix, Direction, NetworkSecurityGroup, PortRange, Protocol, SecurityRule};
use crate::tags::{self, ServiceTagTable};

/// What the tags and ASGs mean for one NIC.
#[derive(Clone, Debug, Default)]
pub struct AddressContext<'a> {
    /// The `VirtualNetwork` tag for this NIC.
    pub virtual_network: AddrSet,
    /// Downloaded service tags, when loaded.
    pub service_tags: Option<&'a ServiceTagTable>,
    /// Private IPs of the members of each application security group, keyed
    /// by lower-case resource id.
    pub application_security_groups: HashMap<String, AddrSet>,
}

impl AddressContext<'_> {
    /// The addresses a tag stands for; `None` for an unknown tag.
    pub fn tag(&self, name: &str) -> Option<AddrSet> {
        self.tag_ref(name).cloned()
    }

    fn tag_ref(&self, name: &str) -> Option<&AddrSet> {
        match name {
            "VirtualNetwork" => Some(&self.virtual_network),
            "Internet" => Some(tags::internet()),
            "AzureLoadBalancer" => Some(tags::azure_load_balancer()),
            other => self.service_tags.and_then(|t| t.get(other)),
        }
    }

    fn prefixes(&self, nsg: &NetworkSecurityGroup, rule: &SecurityRule, list: &[AddressPrefix]) -> Result<AddrSet, ResolveError> {
        // Tags, when any, as one set; `None` for none.
        let mut ranges: Option<AddrSet> = None;
        for p in list {
            match p {
                AddressPrefix::Any => return Ok(AddrSet::any()),
                AddressPrefix::Prefix(_) => {}
                AddressPrefix::Tag(t) => {
                    let s = self.tag_ref(t).ok_or_else(|| ResolveError::UnknownTag {
                        nsg: nsg.name.clone(),
                        rule: rule.name.clone(),
                        tag: t.clone(),
                    })?;
                    ranges = Some(match ranges {
                        None => s.clone(),
                        Some(r) => r.union(s),
                    });
                }
            }
        }
        let plain = AddrSet::from_prefixes(list.iter().filter_map(|p| match p {
            AddressPrefix::Prefix(p) => Some(*p),
            _ => None,
        }));
        // Sets are normalised, so the union with nothing is the set itself.
        Ok(match ranges {
            None => plain,
            Some(r) if plain.is_empty() => r,
            Some(r) => r.union(&plain),
        })
    }

    fn asgs(&self, nsg: &NetworkSecurityGroup, rule: &SecurityRule, ids: &[String]) -> Result<AddrSet, ResolveError> {
        let mut s = AddrSet::empty();
        for id in ids {
            let members = self
                .application_security_groups
                .get(&id.to_ascii_lowercase())
                .ok_or_else(|| ResolveError::UnknownAsg {
                    nsg: nsg.name.clone(),
                    rule: rule.name.clone(),
                    asg: id.clone(),
                })?;
            s = s.union(members);
        }
        Ok(s)
    }

    /// Resolves one rule. A side given by ASGs matches the private IPs of the
    /// ASGs' member NICs, so a rule whose destination is an ASG applies only
    /// to NICs in it (spec §1.7).
    pub fn resolve_rule(&self, nsg: &NetworkSecurityGroup, rule: &SecurityRule, position: usize) -> Result<ResolvedRule, ResolveError> {
        let source = if rule.source_application_security_groups.is_empty() {
            self.prefixes(nsg, rule, &rule.source_address_prefixes)?
        } else {
            self.asgs(nsg, rule, &rule.source_application_security_groups)?
        };
        let destination = if rule.destination_application_security_groups.is_empty() {
            self.prefixes(nsg, rule, &rule.destination_address_prefixes)?
        } else {
            self.asgs(nsg, rule, &rule.destination_application_security_groups)?
        };
        Ok(ResolvedRule {
            position,
            priority: rule.priority,
            access: rule.access,
            protocol: rule.protocol,
            source,
            source_ports: PortSet::new(&rule.source_port_ranges),
            destination,
            destination_ports: PortSet::new(&rule.destination_port_ranges),
        })
    }

    /// Resolves every rule of an NSG, both directions, in evaluation order.
    pub fn resolve(&self, nsg: &NetworkSecurityGroup) -> Result<ResolvedNsg, ResolveError> {
        let all: Vec<&SecurityRule> = nsg.security_rules.iter().chain(nsg.default_security_rules.iter()).collect();
        let mut out = ResolvedNsg {
            inbound: Vec::new(),
            outbound: Vec::new(),
        };
        for dir in [Direction::Inbound, Direction::Outbound] {
            let mut idx: Vec<usize> = (0..all.len()).filter(|&i| all[i].direction == dir).collect();
            idx.sort_by_key(|&i| (all[i].priority, i));
            let list = match dir {
                Direction::Inbound => &mut out.inbound,
                Direction::Outbound => &mut out.outbound,
            };
            for i in idx {
                list.push(self.resolve_rule(nsg, all[i], i)?);
            }
        }
        Ok(out)
    }
}

/// A sorted, merged set of port ranges.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortSet {
    ranges: Vec<PortRange>,
}

impl PortSet {
    /// Normalises ranges (sorted, merged).
    pub fn new(list: &[PortRange]) -> Self {
        let mut v = list.to_vec();
        v.sort();
        // Merge in place: `v[..n]` is the merged prefix.
        let mut n = 0;
        for i in 0..v.len() {
            let r = v[i];
            if n > 0 && r.lo as u32 <= v[n - 1].hi as u32 + 1 {
                v[n - 1].hi = v[n - 1].hi.max(r.hi);
            } else {
                v[n] = r;
                n += 1;
            }
        }
        v.truncate(n);
        PortSet { ranges: v }
    }

    /// All ports.
    pub fn any() -> Self {
        PortSet {
            ranges: vec![PortRange::ANY],
        }
    }

    /// The ranges.
    pub fn ranges(&self) -> &[PortRange] {
        &self.ranges
    }

    /// Membership.
    #[inline]
    pub fn contains(&self, p: u16) -> bool {
        self.ranges.iter().any(|r| r.contains(p))
    }

    /// Every port, 0-65535 (the ranges are merged, so one range).
    pub fn is_any(&self) -> bool {
        self.ranges.as_slice() == [PortRange::ANY]
    }
}

/// A rule reduced to what matching needs, for one NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRule {
    /// Index of the rule in `security_rules` followed by
    /// `default_security_rules` of its NSG.
    pub position: usize,
    pub priority: u32,
    pub access: Access,
    pub protocol: Protocol,
    pub source: AddrSet,
    pub source_ports: PortSet,
    pub destination: AddrSet,
    pub destination_ports: PortSet,
}

impl ResolvedRule {
    /// Whether a flow matches all five fields.
    #[inline]
    pub fn matches(&self, k: &FlowKey) -> bool {
        self.protocol.matches(k.protocol)
            && self.source_ports.contains(k.source_port)
            && self.destination_ports.contains(k.destination_port)
            && self.source.contains_u128(k.source)
            && self.destination.contains_u128(k.destination)
    }

    /// Whether a flow matches whatever its source port: the other four
    /// fields match and the rule's source ports are all ports. For a flow
    /// that stands for every source port (`*` in IP flow verify, spec §3),
    /// a rule on some source ports decides only part of it, so not it.
    #[inline]
    pub fn matches_any_source_port(&self, k: &FlowKey) -> bool {
        self.protocol.matches(k.protocol)
            && self.source_ports.is_any()
            && self.destination_ports.contains(k.destination_port)
            && self.source.contains_u128(k.source)
            && self.destination.contains_u128(k.destination)
    }
}

/// An NSG's rules for one NIC, each direction in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedNsg {
    pub inbound: Vec<ResolvedRule>,
    pub outbound: Vec<ResolvedRule>,
}

impl ResolvedNsg {
    /// The rules of one direction.
    pub fn rules(&self, d: Direction) -> &[ResolvedRule] {
        match d {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }
}
