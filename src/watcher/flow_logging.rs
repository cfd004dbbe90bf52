//! Flow logs of an evaluation: each flow-table record of an evaluated flow
//! becomes a tuple in the NSG flow log of the NSG that decided it (the NSG
//! that denied, or the last that allowed; spec §1.6 / §7.1), and/or in the
//! VNet flow log of the NIC's VNet, subnet or NIC (spec §7.3).

use std::path::PathBuf;

use netwatch_flowlogs::{
    vnet_rule_name_of, FlowLogError, FlowLogEvent, FlowRecord, MacAddress, NsgFlowLogVersion, NsgFlowLogWriter, NsgLogTarget,
    VnetFlowLogWriter, VnetLogTarget,
};

use super::context::NicView;
use super::replay::{NicEvaluator, Verdict};
use super::WatcherError;

/// The scope of a VNet flow log (`targetResourceId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowLogScope {
    VirtualNetwork,
    Subnet,
    NetworkInterface,
}

/// What to write.
#[derive(Clone, Debug, Default)]
pub struct FlowLogOptions {
    /// NSG flow logs under this directory.
    pub nsg_dir: Option<PathBuf>,
    pub nsg_version: Option<NsgFlowLogVersion>,
    /// VNet flow logs under this directory.
    pub vnet_dir: Option<PathBuf>,
    pub vnet_scope: Option<FlowLogScope>,
    /// Flow log resource name (default `<target>-flowlog`).
    pub vnet_flow_log_name: Option<String>,
    /// Region of the Network Watcher (default: the target's location).
    pub vnet_region: Option<String>,
}

/// Counts written, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowLogCounts {
    pub nsg_tuples: u64,
    pub vnet_tuples: u64,
}

/// Turns flow records into flow-log tuples for one NIC.
pub struct FlowLogger {
    mac: MacAddress,
    nsg: Option<(NsgFlowLogWriter, NsgTargets)>,
    vnet: Option<(VnetFlowLogWriter, VnetLogTarget)>,
}

/// NSG log targets of each direction's chain, by position in the chain.
struct NsgTargets {
    inbound: Vec<NsgLogTarget>,
    outbound: Vec<NsgLogTarget>,
}

fn id_error(e: impl std::fmt::Display) -> WatcherError {
    WatcherError::Invalid(e.to_string())
}

impl FlowLogger {
    /// Prepares the writers for a NIC and its compiled chains.
    pub fn new(view: &NicView<'_>, eval: &NicEvaluator<'_>, opts: &FlowLogOptions) -> Result<Self, WatcherError> {
        let mac_text = view.nic.mac_address.as_deref().ok_or_else(|| {
            WatcherError::Invalid(format!(
                "network interface {:?} has no macAddress: flow logs are written per MAC; add it to the NIC's JSON",
                view.nic.name
            ))
        })?;
        let mac: MacAddress = mac_text.parse().map_err(id_error)?;
        let nsg = match &opts.nsg_dir {
            None => None,
            Some(dir) => {
                let targets = |chain: &super::context::NsgChain<'_>| -> Result<Vec<NsgLogTarget>, WatcherError> {
                    chain
                        .links
                        .iter()
                        .map(|l| NsgLogTarget::new(&l.nsg.id, l.nsg.resource_guid.as_deref()).map_err(id_error))
                        .collect()
                };
                let t = NsgTargets {
                    inbound: targets(&eval.inbound)?,
                    outbound: targets(&eval.outbound)?,
                };
                Some((
                    NsgFlowLogWriter::new(dir.clone(), opts.nsg_version.unwrap_or(NsgFlowLogVersion::V2)),
                    t,
                ))
            }
        };
        let vnet = match &opts.vnet_dir {
            None => None,
            Some(dir) => {
                let scope = opts.vnet_scope.unwrap_or(FlowLogScope::VirtualNetwork);
                let (target_id, target_name, location) = match scope {
                    FlowLogScope::VirtualNetwork => (view.vnet.id.clone(), view.vnet.name.clone(), view.vnet.location.clone()),
                    FlowLogScope::Subnet => (
                        view.subnet.id.clone(),
                        format!("{}-{}", view.vnet.name, view.subnet.name),
                        view.vnet.location.clone(),
                    ),
                    FlowLogScope::NetworkInterface => (
                        view.nic.id.clone(),
                        view.nic.name.clone(),
                        view.nic.location.clone().or(view.vnet.location.clone()),
                    ),
                };
                let region = opts.vnet_region.clone().or(location).ok_or_else(|| {
                    WatcherError::Invalid(format!(
                        "the flow log target {target_name:?} has no location; give the region with --flow-log-region"
                    ))
                })?;
                // The programmatic name (`westeurope`) names the region's
                // network watcher, also when given as shown (`West Europe`).
                let region: String = region
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
                    .to_ascii_lowercase();
                let subscription = crate::azure::id_part(&target_id, "subscriptions")
                    .ok_or_else(|| WatcherError::Invalid(format!("cannot find the subscription in resource id {target_id:?}")))?;
                let name = opts.vnet_flow_log_name.clone().unwrap_or_else(|| format!("{target_name}-flowlog"));
                let id = VnetLogTarget::default_flow_log_id(subscription, &region, &name);
                Some((
                    VnetFlowLogWriter::new(dir.clone()),
                    VnetLogTarget::new(&id, &target_id, None).map_err(id_error)?,
                ))
            }
        };
        Ok(FlowLogger { mac, nsg, vnet })
    }

    /// Logs one record of an evaluated flow (transit flows are not logged).
    pub fn record(&mut self, eval: &NicEvaluator<'_>, rec: &FlowRecord<Verdict>) -> Result<(), WatcherError> {
        let v = rec.user;
        let (Some(direction), Some((link, rule_index))) = (v.direction, v.decided_by) else {
            return Ok(());
        };
        let chain = eval.chain(direction);
        let Some(rule) = chain.rule(link as usize, rule_index as usize) else {
            return Ok(());
        };
        let ev = FlowLogEvent::from_record(rec, direction, v.access);
        if let Some((w, targets)) = &mut self.nsg {
            let t = match direction {
                netwatch_rules::Direction::Inbound => &targets.inbound,
                netwatch_rules::Direction::Outbound => &targets.outbound,
            };
            if let Some(target) = t.get(link as usize) {
                w.record(target, self.mac, &rule.flow_log_name(), &ev);
            }
        }
        if let Some((w, target)) = &mut self.vnet {
            let nsg = &chain.links[link as usize].nsg;
            let acl = nsg
                .resource_guid
                .clone()
                .unwrap_or_else(|| netwatch_flowlogs::derived_guid(&nsg.id));
            w.record(target, self.mac, &acl, &vnet_rule_name_of(rule), &ev);
        }
        Ok(())
    }

    /// Writes out records older than `now_ns` (complete minutes).
    pub fn flush_before(&mut self, now_ns: i64) -> Result<(), FlowLogError> {
        if let Some((w, _)) = &mut self.nsg {
            w.flush_before(now_ns)?;
        }
        if let Some((w, _)) = &mut self.vnet {
            w.flush_before(now_ns)?;
        }
        Ok(())
    }

    /// Writes out everything.
    pub fn flush(&mut self) -> Result<FlowLogCounts, FlowLogError> {
        let mut c = FlowLogCounts::default();
        if let Some((w, _)) = &mut self.nsg {
            w.flush()?;
            c.nsg_tuples = w.stats().tuples;
        }
        if let Some((w, _)) = &mut self.vnet {
            w.flush()?;
            c.vnet_tuples = w.stats().tuples;
        }
        Ok(c)
    }
}
