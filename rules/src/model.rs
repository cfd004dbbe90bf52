//! The network security group model: rules as Azure writes them.
//!
//! See `shared/spec/azure-semantics.md` §1 (security rule resource, default
//! rules, special tags).

use std::fmt;

use serde::Serialize;

use crate::addr::IpPrefix;
use crate::error::FieldError;

/// `protocol` of a security rule (`SecurityRuleProtocol`, spec §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Esp,
    Ah,
    /// `*`: every IP protocol.
    Any,
}

impl Protocol {
    /// IANA protocol numbers this rule protocol matches. ICMP covers ICMPv6
    /// too, so one rule serves both families.
    pub fn ip_protocols(self) -> &'static [u8] {
        match self {
            Protocol::Tcp => &[6],
            Protocol::Udp => &[17],
            Protocol::Icmp => &[1, 58],
            Protocol::Esp => &[50],
            Protocol::Ah => &[51],
            Protocol::Any => &[],
        }
    }

    /// Whether a packet of IANA protocol `p` matches.
    #[inline]
    pub fn matches(self, p: u8) -> bool {
        match self {
            Protocol::Any => true,
            Protocol::Icmp => p == 1 || p == 58,
            other => other.ip_protocols()[0] == p,
        }
    }

    /// The ARM spelling (`Tcp`, `Udp`, `Icmp`, `Esp`, `Ah`, `*`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "Tcp",
            Protocol::Udp => "Udp",
            Protocol::Icmp => "Icmp",
            Protocol::Esp => "Esp",
            Protocol::Ah => "Ah",
            Protocol::Any => "*",
        }
    }

    /// Parses the ARM value, case-insensitively; `Any`/`All` mean `*`.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = s.trim();
        [
            ("tcp", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("icmp", Protocol::Icmp),
            ("esp", Protocol::Esp),
            ("ah", Protocol::Ah),
            ("*", Protocol::Any),
            ("any", Protocol::Any),
            ("all", Protocol::Any),
        ]
        .into_iter()
        .find_map(|(k, p)| t.eq_ignore_ascii_case(k).then_some(p))
        .ok_or_else(|| FieldError::new(s, "one of Tcp, Udp, Icmp, Esp, Ah, *"))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `access` of a rule and of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Access {
    Allow,
    Deny,
}

impl Access {
    /// Parses `Allow` / `Deny`, case-insensitively.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("allow") {
            Ok(Access::Allow)
        } else if t.eq_ignore_ascii_case("deny") {
            Ok(Access::Deny)
        } else {
            Err(FieldError::new(s, "Allow or Deny"))
        }
    }

    /// The ARM spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Allow => "Allow",
            Access::Deny => "Deny",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `direction` of a rule and of a flow, as seen from the NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    /// Parses `Inbound` / `Outbound` (also `in` / `out`), case-insensitively.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("inbound") || t.eq_ignore_ascii_case("in") {
            Ok(Direction::Inbound)
        } else if t.eq_ignore_ascii_case("outbound") || t.eq_ignore_ascii_case("out") {
            Ok(Direction::Outbound)
        } else {
            Err(FieldError::new(s, "Inbound or Outbound"))
        }
    }

    /// The ARM spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "Inbound",
            Direction::Outbound => "Outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An inclusive port range; `*` is `0-65535`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// All ports.
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };

    /// One port.
    pub fn single(p: u16) -> Self {
        PortRange { lo: p, hi: p }
    }

    /// Whether `p` is inside.
    #[inline]
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }

    /// Parses `*`, `80` or `80-90` (spec §1.1).
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = s.trim();
        let bad = || FieldError::new(s, "a port 0-65535, a range a-b or *");
        if t == "*" || t.eq_ignore_ascii_case("any") {
            return Ok(PortRange::ANY);
        }
        let port = |x: &str| -> Result<u16, FieldError> {
            let x = x.trim();
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            x.parse::<u16>().map_err(|_| bad())
        };
        match t.split_once('-') {
            Some((a, b)) => {
                let (lo, hi) = (port(a)?, port(b)?);
                if lo > hi {
                    return Err(FieldError::new(s, "a range a-b with a <= b"));
                }
                Ok(PortRange { lo, hi })
            }
            None => Ok(PortRange::single(port(t)?)),
        }
    }
}

impl fmt::Display for PortRange {
    /// Azure's effective-rule form: `0-65535`, `80-80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

/// One entry of a rule's source or destination as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddressPrefix {
    /// `*`, `Any`: every address of both families.
    Any,
    /// A CIDR prefix or a single IP.
    Prefix(IpPrefix),
    /// A tag: `VirtualNetwork`, `AzureLoadBalancer`, `Internet` or a service
    /// tag such as `Storage.WestUS`. Stored in the canonical spelling for the
    /// three special tags, as written otherwise.
    Tag(String),
}

/// Canonical names of the special tags and their classic spellings (spec §1.5).
const SPECIAL_TAGS: &[(&str, &str)] = &[
    ("virtualnetwork", "VirtualNetwork"),
    ("virtual_network", "VirtualNetwork"),
    ("azureloadbalancer", "AzureLoadBalancer"),
    ("azure_loadbalancer", "AzureLoadBalancer"),
    ("internet", "Internet"),
];

impl AddressPrefix {
    /// Parses a prefix field entry. Anything that is not `*` and does not look
    /// like an address is a tag, resolved later against the tag table.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(FieldError::new(s, "an IP address, a CIDR prefix, * or a service tag"));
        }
        if t == "*" || t.eq_ignore_ascii_case("any") {
            return Ok(AddressPrefix::Any);
        }
        let looks_numeric = t.contains(':') || t.bytes().next().is_some_and(|b| b.is_ascii_digit());
        if looks_numeric {
            // The text as written: whitespace around a prefix is refused,
            // as Azure refuses it.
            let p = s
                .parse::<IpPrefix>()
                .map_err(|e| FieldError::new(s, format!("an IP address or CIDR prefix such as 10.0.0.0/24: {e}")))?;
            // Azure refuses a rule whose prefix has host bits set ("Security
            // rule ... has invalid Address prefix. Value provided:
            // 50.206.209.68/27", HTTP 400): such a file was not written by
            // Azure, and which network was meant is a guess.
            if let Some(network) = p.host_bits_network(t) {
                return Err(FieldError::new(
                    s,
                    format!("a CIDR prefix: its host bits are set, which Azure rejects (the network is {network})"),
                ));
            }
            return Ok(AddressPrefix::Prefix(p));
        }
        if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
            return Err(FieldError::new(s, "an IP address, a CIDR prefix, * or a service tag"));
        }
        let lower = t.to_ascii_lowercase();
        let canon = SPECIAL_TAGS
            .iter()
            .find(|(k, _)| *k == lower)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| t.to_string());
        Ok(AddressPrefix::Tag(canon))
    }
}

impl fmt::Display for AddressPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressPrefix::Any => f.write_str("*"),
            AddressPrefix::Prefix(p) => {
                let host = if p.addr().is_ipv4() { 32 } else { 128 };
                if p.len() == host {
                    write!(f, "{}", p.addr())
                } else {
                    write!(f, "{p}")
                }
            }
            AddressPrefix::Tag(t) => f.write_str(t),
        }
    }
}

/// Whether a rule is one of the six default rules or a user rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    User,
    Default,
}

impl RuleKind {
    /// The collection prefix in IP flow verify and effective rules
    /// (`securityRules/`, `defaultSecurityRules/`; spec §13.1).
    pub fn collection(self) -> &'static str {
        match self {
            RuleKind::User => "securityRules",
            RuleKind::Default => "defaultSecurityRules",
        }
    }
}

/// A security rule as configured (spec §1.1). Singular and plural fields are
/// merged: `source_address_prefixes` holds `sourceAddressPrefix` and every
/// entry of `sourceAddressPrefixes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityRule {
    pub name: String,
    pub id: Option<String>,
    pub kind: RuleKind,
    pub description: Option<String>,
    pub priority: u32,
    pub direction: Direction,
    pub access: Access,
    pub protocol: Protocol,
    pub source_address_prefixes: Vec<AddressPrefix>,
    pub source_port_ranges: Vec<PortRange>,
    pub destination_address_prefixes: Vec<AddressPrefix>,
    pub destination_port_ranges: Vec<PortRange>,
    /// Resource ids of source application security groups.
    pub source_application_security_groups: Vec<String>,
    /// Resource ids of destination application security groups.
    pub destination_application_security_groups: Vec<String>,
    /// The original singular/plural spellings, kept for faithful output.
    pub written: WrittenFields,
}

/// Which of the singular or plural ARM fields a rule used, for output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WrittenFields {
    pub source_address_prefix: Option<String>,
    pub source_address_prefixes: Vec<String>,
    pub destination_address_prefix: Option<String>,
    pub destination_address_prefixes: Vec<String>,
    pub source_port_range: Option<String>,
    pub source_port_ranges: Vec<String>,
    pub destination_port_range: Option<String>,
    pub destination_port_ranges: Vec<String>,
}

impl SecurityRule {
    /// `securityRules/<name>` or `defaultSecurityRules/<name>`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.kind.collection(), self.name)
    }

    /// Flow-log spelling: `UserRule_<name>` / `DefaultRule_<name>` (spec §7.1).
    pub fn flow_log_name(&self) -> String {
        match self.kind {
            RuleKind::User => format!("UserRule_{}", self.name),
            RuleKind::Default => format!("DefaultRule_{}", self.name),
        }
    }
}

/// Lowest and highest priority a user rule may have (spec §1.1).
pub const PRIORITY_MIN: u32 = 100;
/// Highest user priority.
pub const PRIORITY_MAX: u32 = 4096;

/// A network security group: user rules and the six default rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSecurityGroup {
    pub id: String,
    pub name: String,
    pub resource_guid: Option<String>,
    pub location: Option<String>,
    pub security_rules: Vec<SecurityRule>,
    pub default_security_rules: Vec<SecurityRule>,
}

impl NetworkSecurityGroup {
    /// An NSG with the given user rules and Azure's six default rules.
    pub fn new(id: impl Into<String>, name: impl Into<String>, security_rules: Vec<SecurityRule>) -> Self {
        let id = id.into();
        let default_security_rules = default_security_rules(&id);
        NetworkSecurityGroup {
            id,
            name: name.into(),
            resource_guid: None,
            location: None,
            security_rules,
            default_security_rules,
        }
    }

    /// All rules of one direction in evaluation order: user rules by
    /// priority, then the default rules (spec §1.3).
    pub fn rules_in_order(&self, direction: Direction) -> Vec<&SecurityRule> {
        let mut v: Vec<&SecurityRule> = self
            .security_rules
            .iter()
            .chain(self.default_security_rules.iter())
            .filter(|r| r.direction == direction)
            .collect();
        v.sort_by_key(|r| (r.priority, r.kind == RuleKind::Default));
        v
    }
}

/// Azure's six default security rules, exactly as ARM writes them (spec §1.4).
pub fn default_security_rules(nsg_id: &str) -> Vec<SecurityRule> {
    let table: [(&str, &str, Direction, u32, AddressPrefix, AddressPrefix, Access); 6] = [
        (
            "AllowVnetInBound",
            "Allow inbound traffic from all VMs in VNET",
            Direction::Inbound,
            65000,
            AddressPrefix::Tag("VirtualNetwork".into()),
            AddressPrefix::Tag("VirtualNetwork".into()),
            Access::Allow,
        ),
        (
            "AllowAzureLoadBalancerInBound",
            "Allow inbound traffic from azure load balancer",
            Direction::Inbound,
            65001,
            AddressPrefix::Tag("AzureLoadBalancer".into()),
            AddressPrefix::Any,
            Access::Allow,
        ),
        (
            "DenyAllInBound",
            "Deny all inbound traffic",
            Direction::Inbound,
            65500,
            AddressPrefix::Any,
            AddressPrefix::Any,
            Access::Deny,
        ),
        (
            "AllowVnetOutBound",
            "Allow outbound traffic from all VMs to all VMs in VNET",
            Direction::Outbound,
            65000,
            AddressPrefix::Tag("VirtualNetwork".into()),
            AddressPrefix::Tag("VirtualNetwork".into()),
            Access::Allow,
        ),
        (
            "AllowInternetOutBound",
            "Allow outbound traffic from all VMs to Internet",
            Direction::Outbound,
            65001,
            AddressPrefix::Any,
            AddressPrefix::Tag("Internet".into()),
            Access::Allow,
        ),
        (
            "DenyAllOutBound",
            "Deny all outbound traffic",
            Direction::Outbound,
            65500,
            AddressPrefix::Any,
            AddressPrefix::Any,
            Access::Deny,
        ),
    ];
    table
        .into_iter()
        .map(|(name, desc, direction, priority, src, dst, access)| SecurityRule {
            name: name.to_string(),
            id: Some(format!("{nsg_id}/defaultSecurityRules/{name}")),
            kind: RuleKind::Default,
            description: Some(desc.to_string()),
            priority,
            direction,
            access,
            protocol: Protocol::Any,
            written: WrittenFields {
                source_address_prefix: Some(src.to_string()),
                destination_address_prefix: Some(dst.to_string()),
                source_port_range: Some("*".into()),
                destination_port_range: Some("*".into()),
                ..WrittenFields::default()
            },
            source_address_prefixes: vec![src],
            source_port_ranges: vec![PortRange::ANY],
            destination_address_prefixes: vec![dst],
            destination_port_ranges: vec![PortRange::ANY],
            source_application_security_groups: vec![],
            destination_application_security_groups: vec![],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(PortRange::parse("*").unwrap(), PortRange::ANY);
        assert_eq!(PortRange::parse("80").unwrap(), PortRange::single(80));
        assert_eq!(PortRange::parse(" 80 - 90 ").unwrap(), PortRange { lo: 80, hi: 90 });
        let e = PortRange::parse("80-").unwrap_err();
        assert_eq!(e.to_string(), "\"80-\" is not a port 0-65535, a range a-b or *");
        assert!(PortRange::parse("65536").is_err());
        assert!(PortRange::parse("90-80").is_err());
        assert!(PortRange::parse("+80").is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(AddressPrefix::parse("*").unwrap(), AddressPrefix::Any);
        assert_eq!(AddressPrefix::parse("internet").unwrap(), AddressPrefix::Tag("Internet".into()));
        assert_eq!(
            AddressPrefix::parse("VIRTUAL_NETWORK").unwrap(),
            AddressPrefix::Tag("VirtualNetwork".into())
        );
        assert_eq!(
            AddressPrefix::parse("Storage.WestUS").unwrap(),
            AddressPrefix::Tag("Storage.WestUS".into())
        );
        assert!(AddressPrefix::parse("10.0.0.0/33").is_err());
        assert!(AddressPrefix::parse("10.0.0.300").is_err());
        assert!(AddressPrefix::parse("bad tag!").is_err());
        // Written exactly, as Azure takes a prefix.
        for bad in ["10.0.0.0/+8", " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0.0 /8"] {
            assert!(AddressPrefix::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AddressPrefix::parse("10.0.0.4").unwrap().to_string(), "10.0.0.4");
    }

    #[test]
    fn defaults_are_six() {
        let d = default_security_rules("/x/nsg");
        assert_eq!(d.len(), 6);
        assert_eq!(d[2].qualified_name(), "defaultSecurityRules/DenyAllInBound");
        assert_eq!(d[4].flow_log_name(), "DefaultRule_AllowInternetOutBound");
    }
}
