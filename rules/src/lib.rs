//! netwatch-rules: the Azure network security group model and its evaluation.
//!
//! Pure: no I/O. The layers, bottom up:
//! - [`addr`]: IPv4/IPv6 prefixes and address sets in one 128-bit space;
//! - [`model`]: NSGs and security rules as Azure writes them, the six default
//!   rules (spec §1);
//! - [`tags`]: `Internet`, `AzureLoadBalancer` and the service tag table;
//! - [`resolve`]: a NIC's view of an NSG, tags and ASGs expanded;
//! - [`eval`]: first-match classifiers and the subnet/NIC chain.
//!
//! ```
//! use netwatch_rules::{AddressContext, NetworkSecurityGroup, Flow, LinearClassifier, Classifier, Direction};
//! let nsg = NetworkSecurityGroup::new("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web", "web", vec![]);
//! let ctx = AddressContext { virtual_network: "10.0.0.0/16".parse::<netwatch_rules::IpPrefix>().map(netwatch_rules::AddrSet::from_prefix).unwrap(), ..Default::default() };
//! let resolved = ctx.resolve(&nsg).unwrap();
//! let linear = LinearClassifier::new(resolved.inbound.clone());
//! let flow = Flow { protocol: 6, source: "10.0.1.4".parse().unwrap(), source_port: 50000, destination: "10.0.0.4".parse().unwrap(), destination_port: 22 };
//! let i = linear.first_match(&flow.key()).unwrap();
//! let rule = nsg.rules_in_order(Direction::Inbound)[i];
//! assert_eq!(rule.qualified_name(), "defaultSecurityRules/AllowVnetInBound");
//! ```
#![forbid(unsafe_code)]

pub mod addr;
pub mod classbench;
pub mod compiled;
pub mod error;
pub mod eval;
pub mod flow;
pub mod model;
pub mod resolve;
pub mod tags;

pub use addr::{AddrSet, IpPrefix};
pub use compiled::{CompiledClassifier, CompiledStats, CrossProducts};
pub use error::{quoted, FieldError, PrefixError, Quoted, ResolveError};
pub use eval::{evaluate_chain, AnySourcePortClassifier, ChainDecision, ChainLink, Classifier, LinearClassifier, NsgVerdict};
pub use flow::{Flow, FlowKey};
pub use model::{
    default_security_rules, Access, AddressPrefix, Direction, NetworkSecurityGroup, PortRange, Protocol, RuleKind, SecurityRule,
    WrittenFields,
};
pub use resolve::{AddressContext, PortSet, ResolvedNsg, ResolvedRule};
pub use tags::ServiceTagTable;
