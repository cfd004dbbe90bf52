//! IP flow verify (spec §3): is this flow allowed to or from the VM, and by
//! which rule?

use std::net::IpAddr;

use netwatch_rules::{Access, Direction, Flow, ResolvedRule};
use serde::Serialize;

use super::context::{select_nic, Attachment, NicView};
use super::WatcherError;
use crate::azure::Environment;

/// `protocol` of an IP flow verify request (`IpFlowProtocol`: TCP or UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFlowProtocol {
    Tcp,
    Udp,
}

impl IpFlowProtocol {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            IpFlowProtocol::Tcp => 6,
            IpFlowProtocol::Udp => 17,
        }
    }

    /// Parses `TCP` / `UDP`, case-insensitively.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            _ => Err(format!("{s:?} is not TCP or UDP (IP flow verify tests TCP and UDP only)")),
        }
    }
}

/// The request (`VerificationIPFlowParameters`), target given by name or id.
#[derive(Clone, Debug)]
pub struct IpFlowVerifyParameters {
    pub vm: Option<String>,
    pub nic: Option<String>,
    pub direction: Direction,
    pub protocol: IpFlowProtocol,
    pub local_ip: IpAddr,
    pub local_port: u16,
    pub remote_ip: IpAddr,
    pub remote_port: u16,
    /// `*` as the source port (the remote port inbound, the local port
    /// outbound; the REST API allows `*` for the source port only): the
    /// flow stands for every source port, so a rule on some source ports
    /// does not decide it, and the source port given is ignored.
    pub any_source_port: bool,
}

impl IpFlowVerifyParameters {
    /// The flow as a 5-tuple: outbound local -> remote, inbound remote -> local
    /// (spec §3, local/remote mapping).
    pub fn flow(&self) -> Flow {
        let (source, source_port, destination, destination_port) = match self.direction {
            Direction::Outbound => (self.local_ip, self.local_port, self.remote_ip, self.remote_port),
            Direction::Inbound => (self.remote_ip, self.remote_port, self.local_ip, self.local_port),
        };
        Flow {
            protocol: self.protocol.number(),
            source,
            source_port,
            destination,
            destination_port,
        }
    }
}

/// `VerificationIPFlowResult`: `{"access":"Allow","ruleName":"..."}`, with
/// `ruleName` absent when no NSG applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationIpFlowResult {
    pub access: Access,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
}

/// The per-NSG, per-rule trace, modelled on NSG diagnostics (spec §3.1).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpFlowExplanation {
    pub access: Access,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    pub network_interface_id: String,
    pub direction: Direction,
    pub flow: FlowView,
    pub evaluated_network_security_groups: Vec<EvaluatedNetworkSecurityGroup>,
}

/// The flow, as evaluated.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowView {
    pub protocol: String,
    pub source: String,
    pub source_port: PortView,
    pub destination: String,
    pub destination_port: u16,
}

/// A port of the evaluated flow: a number, or `*` for any source port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PortView {
    Number(u16),
    Any(&'static str),
}

/// One NSG in the chain and how its rules fared.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatedNetworkSecurityGroup {
    pub network_security_group_id: String,
    pub applied_to: String,
    pub matched_rule: Option<MatchedRule>,
    pub rules_evaluation_result: Vec<RuleEvaluationResult>,
}

/// The rule that decided for one NSG.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedRule {
    pub rule_name: String,
    pub action: Access,
}

/// Which fields of one rule matched (`rulesEvaluationResult`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleEvaluationResult {
    pub name: String,
    pub priority: u32,
    pub protocol_matched: bool,
    pub source_matched: bool,
    pub source_port_matched: bool,
    pub destination_matched: bool,
    pub destination_port_matched: bool,
}

fn field_matches(rule: &ResolvedRule, flow: &Flow, any_source_port: bool) -> [bool; 5] {
    let k = flow.key();
    [
        rule.protocol.matches(k.protocol),
        rule.source.contains_u128(k.source),
        if any_source_port {
            rule.source_ports.is_any()
        } else {
            rule.source_ports.contains(k.source_port)
        },
        rule.destination.contains_u128(k.destination),
        rule.destination_ports.contains(k.destination_port),
    ]
}

/// Runs IP flow verify; with `explain`, also the trace.
pub fn ip_flow_verify(
    env: &Environment,
    p: &IpFlowVerifyParameters,
) -> Result<(VerificationIpFlowResult, IpFlowExplanation), WatcherError> {
    if p.local_ip.is_ipv4() != p.remote_ip.is_ipv4() {
        return Err(WatcherError::Invalid(format!(
            "local IP {} and remote IP {} are of different families",
            p.local_ip, p.remote_ip
        )));
    }
    let nic = select_nic(env, p.vm.as_deref(), p.nic.as_deref(), Some(p.local_ip))?;
    let view = NicView::for_nic(env, nic, Some(p.local_ip))?;
    let chain = view.compile(p.direction)?;
    let flow = p.flow();
    let decision = if p.any_source_port {
        chain.decide_any_source_port(&flow.key())
    } else {
        chain.decide(&flow.key())
    };
    let rule_name = decision
        .decided_by
        .and_then(|v| v.rule_index.and_then(|i| chain.rule_name(v.chain_index, i)));
    let result = VerificationIpFlowResult {
        access: decision.access,
        rule_name: rule_name.clone(),
    };

    let mut evaluated = Vec::new();
    for (li, link) in chain.links.iter().enumerate() {
        let mut results = Vec::new();
        let mut matched = None;
        for (ri, r) in link.rules().iter().enumerate() {
            let m = field_matches(r, &flow, p.any_source_port);
            let name = chain.rule_name(li, ri).unwrap_or_default();
            results.push(RuleEvaluationResult {
                name: name.clone(),
                priority: r.priority,
                protocol_matched: m[0],
                source_matched: m[1],
                source_port_matched: m[2],
                destination_matched: m[3],
                destination_port_matched: m[4],
            });
            if m.iter().all(|x| *x) {
                matched = Some(MatchedRule {
                    rule_name: name,
                    action: r.access,
                });
                break;
            }
        }
        let stop = matched.as_ref().is_some_and(|m| m.action == Access::Deny);
        evaluated.push(EvaluatedNetworkSecurityGroup {
            network_security_group_id: link.nsg.id.clone(),
            applied_to: view.applied_to(link.attachment).to_string(),
            matched_rule: matched,
            rules_evaluation_result: results,
        });
        if stop {
            break;
        }
    }
    let _ = Attachment::Subnet;
    let explanation = IpFlowExplanation {
        access: result.access,
        rule_name,
        network_interface_id: nic.id.clone(),
        direction: p.direction,
        flow: FlowView {
            protocol: match p.protocol {
                super::IpFlowProtocol::Tcp => "TCP".into(),
                super::IpFlowProtocol::Udp => "UDP".into(),
            },
            source: flow.source.to_string(),
            source_port: if p.any_source_port {
                PortView::Any("*")
            } else {
                PortView::Number(flow.source_port)
            },
            destination: flow.destination.to_string(),
            destination_port: flow.destination_port,
        },
        evaluated_network_security_groups: evaluated,
    };
    Ok((result, explanation))
}
