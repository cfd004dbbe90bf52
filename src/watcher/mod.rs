//! Network Watcher's operations over a loaded [`Environment`](crate::Environment).
//! Each is a plain function returning a value in Azure's response shape;
//! the CLI only parses arguments and prints.

pub mod connectivity;
pub mod context;
pub mod flow_logging;
pub mod ip_flow;
pub mod packet_capture;
pub mod replay;
pub mod routes;
pub mod security_view;
pub mod topology;
pub mod verdicts;

use thiserror::Error;

pub use context::{NicView, NsgChain};
pub use ip_flow::{ip_flow_verify, IpFlowExplanation, IpFlowProtocol, IpFlowVerifyParameters, VerificationIpFlowResult};
pub use security_view::{effective_security_rules, security_group_view};

/// Errors of the operations: a target that is not there, an input that does
/// not fit the environment, an NSG that does not resolve.
#[derive(Debug, Error)]
pub enum WatcherError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Resolve(#[from] netwatch_rules::ResolveError),
    /// A resolve error with the file and JSON path of the value it is about.
    #[error("{at}: {source}")]
    Located {
        at: crate::azure::Location,
        source: netwatch_rules::ResolveError,
    },
}

impl From<crate::azure::UnknownPeerAddressSpace> for WatcherError {
    fn from(e: crate::azure::UnknownPeerAddressSpace) -> Self {
        WatcherError::NotFound(e.to_string())
    }
}

impl From<crate::azure::topology::VirtualNetworkTagError> for WatcherError {
    fn from(e: crate::azure::topology::VirtualNetworkTagError) -> Self {
        use crate::azure::topology::VirtualNetworkTagError as E;
        match e {
            E::UnknownPeerAddressSpace(e) => e.into(),
            e @ E::RouteServiceTag { .. } => WatcherError::Invalid(e.to_string()),
        }
    }
}

impl WatcherError {
    /// `e`, about a rule of `nsg`, with the place in the resource files of
    /// the tag or group it names, when found there.
    pub fn locate(env: &crate::Environment, nsg: &netwatch_rules::NetworkSecurityGroup, e: netwatch_rules::ResolveError) -> Self {
        use netwatch_rules::ResolveError::{UnknownAsg, UnknownTag};
        let (rule, value) = match &e {
            UnknownTag { rule, tag, .. } => (rule, tag),
            UnknownAsg { rule, asg, .. } => (rule, asg),
        };
        match env.nsg_json(&nsg.id).and_then(|j| j.locate_rule_value(rule, value)) {
            Some(at) => WatcherError::Located { at, source: e },
            None => WatcherError::Resolve(e),
        }
    }
}
