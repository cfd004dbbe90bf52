//! The Azure resources netwatch reads, and how each is parsed from either
//! JSON shape (see [`super::json`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use netwatch_routing::{check_route_table, RouteDestination, RouteError, RouteErrorSite, RouteField, RouteTableInput, UserRoute};
use netwatch_rules::{
    default_security_rules, quoted, Access, AddressPrefix, Direction, IpPrefix, NetworkSecurityGroup, PortRange, Protocol, RuleKind,
    SecurityRule, WrittenFields,
};
use serde_json::{Map, Value};

use super::json::{Document, Json, Location, Node};
use super::LoadError;

/// Lower-cases an id for case-insensitive matching (Azure ids are).
pub fn id_key(id: &str) -> String {
    id.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The last segment of a resource id.
pub fn name_of(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// The segment after `key` in a resource id (`subscriptions`,
/// `resourceGroups`, matched without regard to case), if any.
pub fn id_part<'a>(id: &'a str, key: &str) -> Option<&'a str> {
    let mut it = id.split('/');
    while let Some(seg) = it.next() {
        if seg.eq_ignore_ascii_case(key) {
            return it.next().filter(|s| !s.is_empty());
        }
    }
    None
}

/// The id of the parent resource: `/.../virtualNetworks/v/subnets/s` -> `/.../virtualNetworks/v`.
pub fn parent_id(id: &str) -> &str {
    let t = id.trim_end_matches('/');
    let mut cut = t;
    for _ in 0..2 {
        cut = match cut.rfind('/') {
            Some(i) => &cut[..i],
            None => return "",
        };
    }
    cut
}

fn prefix(at: &Node<'_>, s: &str) -> Result<IpPrefix, LoadError> {
    let p = s.parse::<IpPrefix>().map_err(|e| {
        at.error(format!(
            "{} is not an IP address or CIDR prefix such as 10.0.0.0/16: {e}",
            quoted(s)
        ))
    })?;
    // Azure refuses address spaces and subnets with host bits set; which
    // network was meant is a guess, so say so rather than truncate.
    match p.host_bits_network(s) {
        Some(network) => Err(at.error(format!(
            "{} is not a CIDR prefix: its host bits are set, which Azure rejects (the network is {network})",
            quoted(s)
        ))),
        None => Ok(p),
    }
}

fn prefixes(node: &Node<'_>, key: &str) -> Result<Vec<IpPrefix>, LoadError> {
    node.str_array(key)?.into_iter().map(|(s, at)| prefix(&at, s)).collect()
}

fn id_and_name(node: &Node<'_>, kind: &str) -> Result<(String, String), LoadError> {
    let id = node.str("id")?.map(str::to_string);
    let name = node.str("name")?.map(str::to_string);
    match (id, name) {
        (Some(id), Some(name)) => Ok((id, name)),
        (Some(id), None) => {
            let n = name_of(&id).to_string();
            Ok((id, n))
        }
        (None, Some(name)) => Ok((format!("/{kind}/{name}"), name)),
        (None, None) => Err(node.error("a resource needs an \"id\" or a \"name\"")),
    }
}

// ---------------------------------------------------------------- NSGs

/// Azure's limits (spec §1.8): rules in an NSG (its own, the six default
/// rules aside), and IP addresses and ranges in a rule's source or in its
/// destination (each counted on its own).
const MAX_RULES: usize = 1000;
const MAX_ADDRESSES: usize = 4000;

/// `n` with thousands separators, as the limits are written (`4,000`).
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parses a `Microsoft.Network/networkSecurityGroups` resource (spec §1.2).
pub fn parse_nsg(node: &Node<'_>) -> Result<NetworkSecurityGroup, LoadError> {
    let (id, name) = id_and_name(node, "networkSecurityGroups")?;
    // Azure always writes the list, empty or not: without it the rules are
    // not in this export (`az resource list` leaves out the properties).
    if node.field("securityRules").is_none() {
        return Err(node.field_error(
            "securityRules",
            "missing: the NSG's rules are not in this file (`az resource list` leaves them out); \
             export the NSG with `az network nsg show` or `az network nsg list`",
        ));
    }
    let items = node.array("securityRules")?;
    if items.len() > MAX_RULES {
        return Err(node.field_error(
            "securityRules",
            format!(
                "{} rules; Azure allows at most {} in an NSG",
                thousands(items.len()),
                thousands(MAX_RULES)
            ),
        ));
    }
    let mut user = Vec::with_capacity(items.len());
    for n in &items {
        user.push(parse_rule(n, RuleKind::User, &id)?);
    }
    check_priorities(node, "securityRules", &user)?;
    check_rule_names(&items, &user)?;
    let default_items = node.array("defaultSecurityRules")?;
    let mut defaults = default_items
        .iter()
        .map(|n| parse_rule(n, RuleKind::Default, &id))
        .collect::<Result<Vec<_>, _>>()?;
    check_priorities(node, "defaultSecurityRules", &defaults)?;
    let azure_defaults = default_security_rules(&id);
    if defaults.is_empty() {
        // The az CLI list shape and hand-written files often omit them; Azure
        // always has exactly these six.
        defaults = azure_defaults;
    } else {
        check_default_rules(node, &default_items, &defaults, &azure_defaults)?;
    }
    Ok(NetworkSecurityGroup {
        id,
        name,
        resource_guid: node.str("resourceGuid")?.map(str::to_string),
        location: node.str("location")?.map(str::to_string),
        security_rules: user,
        default_security_rules: defaults,
    })
}

/// The rules of an NSG as JSON in the ARM shape, for echoing back: a handle
/// on the parsed file, the JSON built only when asked for.
#[derive(Clone, Debug)]
pub struct NsgJson {
    doc: Arc<Document>,
    file: Arc<Path>,
    /// Where the NSG is in the document (see [`Json::at`]).
    positions: Vec<usize>,
    nsg_id: String,
}

impl NsgJson {
    /// The NSG at `positions` of `doc`, which parsed as NSG `nsg_id`.
    pub fn new(doc: Arc<Document>, file: Arc<Path>, positions: Vec<usize>, nsg_id: String) -> Self {
        NsgJson {
            doc,
            file,
            positions,
            nsg_id,
        }
    }

    /// The rules of array `key` of the NSG, each in the ARM shape.
    fn rules(&self, key: &str) -> Vec<Value> {
        let Some(v) = self.doc.at(&self.positions) else {
            return Vec::new();
        };
        let node = Node::new(&self.doc, v, &self.file, "");
        node.array(key)
            .unwrap_or_default()
            .iter()
            .map(|c| arm_shape(&self.doc, c.value))
            .collect()
    }

    /// Where rule `rule` of the NSG writes `value` (a tag, or an ASG id) in
    /// a source or destination field: the file and the JSON path, for
    /// errors about that value. `None` when not found as written.
    pub fn locate_rule_value(&self, rule: &str, value: &str) -> Option<Location> {
        let v = self.doc.at(&self.positions)?;
        let root = match self.positions.as_slice() {
            [] => String::new(),
            [i] => format!("[{i}]"),
            [_, i] => format!("value[{i}]"),
            _ => return None,
        };
        let node = Node::new(&self.doc, v, &self.file, &root);
        for list in ["securityRules", "defaultSecurityRules"] {
            for r in node.array(list).ok()? {
                if !r.str("name").ok().flatten().is_some_and(|n| n.eq_ignore_ascii_case(rule)) {
                    continue;
                }
                for side in ["source", "destination"] {
                    let single = format!("{side}AddressPrefix");
                    if let Some(f) = r
                        .field(&single)
                        .filter(|f| f.as_str().is_some_and(|x| x.trim().eq_ignore_ascii_case(value)))
                    {
                        return Some(f.location());
                    }
                    for (x, at) in r.str_array(&format!("{side}AddressPrefixes")).ok()? {
                        if x.trim().eq_ignore_ascii_case(value) {
                            return Some(at.location());
                        }
                    }
                    for g in r.array(&format!("{side}ApplicationSecurityGroups")).ok()? {
                        if let Some(id) = g.field("id").filter(|f| f.as_str().is_some_and(|x| x.eq_ignore_ascii_case(value))) {
                            return Some(id.location());
                        }
                    }
                }
            }
        }
        None
    }

    /// `securityRules`, as written (in the ARM shape).
    pub fn security_rules(&self) -> Vec<Value> {
        self.rules("securityRules")
    }

    /// `defaultSecurityRules`, as written (in the ARM shape), or Azure's six
    /// when the input has none.
    pub fn default_security_rules(&self) -> Vec<Value> {
        let written = self.rules("defaultSecurityRules");
        if !written.is_empty() {
            return written;
        }
        default_security_rules(&self.nsg_id).iter().map(rule_to_arm_json).collect()
    }
}

/// Rule names (spec §1.1): unique within the NSG (ARM names compare
/// without case), 1 to 80 characters, word characters, `.`, `-` and `_`,
/// starting with a word character and ending with one or `_`.
fn check_rule_names(items: &[Node<'_>], rules: &[SecurityRule]) -> Result<(), LoadError> {
    let mut seen: HashMap<String, usize, foldhash::fast::RandomState> = HashMap::with_capacity_and_hasher(rules.len(), Default::default());
    for (i, (n, r)) in items.iter().zip(rules).enumerate() {
        let name = r.name.as_str();
        let word = |c: char| c.is_alphanumeric() || c == '_';
        let valid = (1..=80).contains(&name.chars().count())
            && name.chars().all(|c| word(c) || c == '.' || c == '-')
            && name.chars().next().is_some_and(word)
            && name.chars().last().is_some_and(word);
        if !valid {
            return Err(n.field_error(
                "name",
                format!(
                    "{} is not a rule name: 1 to 80 letters, digits, '_', '.' or '-', starting with a letter, digit or '_' and ending with one",
                    quoted(name)
                ),
            ));
        }
        match seen.entry(name.to_lowercase()) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let j = *e.get();
                return Err(n.field_error(
                    "name",
                    format!(
                        "{} is already the name of rule {j} ({}); rule names are unique in an NSG",
                        quoted(name),
                        quoted(&rules[j].name)
                    ),
                ));
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
            }
        }
    }
    Ok(())
}

/// A written `defaultSecurityRules` list must be Azure's six rules as they
/// are (spec §1.4: they cannot be changed or deleted): a partial or
/// altered list is data from somewhere else.
fn check_default_rules(node: &Node<'_>, items: &[Node<'_>], written: &[SecurityRule], azure: &[SecurityRule]) -> Result<(), LoadError> {
    for (n, w) in items.iter().zip(written) {
        let Some(a) = azure.iter().find(|a| a.name.eq_ignore_ascii_case(&w.name)) else {
            let names: Vec<&str> = azure.iter().map(|a| a.name.as_str()).collect();
            return Err(n.field_error(
                "name",
                format!("{} is not one of Azure's default rules ({})", quoted(&w.name), names.join(", ")),
            ));
        };
        let differs = [
            ("priority", w.priority != a.priority),
            ("direction", w.direction != a.direction),
            ("access", w.access != a.access),
            ("protocol", w.protocol != a.protocol),
            ("sourceAddressPrefix", w.source_address_prefixes != a.source_address_prefixes),
            (
                "destinationAddressPrefix",
                w.destination_address_prefixes != a.destination_address_prefixes,
            ),
            ("sourcePortRange", w.source_port_ranges != a.source_port_ranges),
            ("destinationPortRange", w.destination_port_ranges != a.destination_port_ranges),
        ]
        .into_iter()
        .find(|(_, d)| *d);
        if let Some((field, _)) = differs {
            return Err(n.field_error(
                field,
                format!(
                    "default rule {} differs from Azure's, and default rules cannot be changed",
                    quoted(&w.name)
                ),
            ));
        }
    }
    if let Some(missing) = azure.iter().find(|a| !written.iter().any(|w| w.name.eq_ignore_ascii_case(&a.name))) {
        return Err(node.field_error(
            "defaultSecurityRules",
            format!(
                "lacks {}: Azure's NSGs have all six default rules; give them all or leave the list out",
                quoted(&missing.name)
            ),
        ));
    }
    Ok(())
}

fn check_priorities(node: &Node<'_>, list: &str, rules: &[SecurityRule]) -> Result<(), LoadError> {
    // The first rule of each priority and direction.
    let mut first: HashMap<(u32, Direction), usize> = HashMap::with_capacity(rules.len());
    for (i, a) in rules.iter().enumerate() {
        let b = *first.entry((a.priority, a.direction)).or_insert(i);
        if b != i {
            let message = format!(
                "{} is already used by rule {} in the same direction; priorities must be unique",
                a.priority,
                quoted(&rules[b].name)
            );
            // The rule's own node, so that the path is the rule's field.
            let items = node.array(list)?;
            return Err(match items.get(i) {
                Some(rule) => rule.field_error("priority", message),
                None => node.field_error(&format!("{list}[{i}].priority"), message),
            });
        }
    }
    Ok(())
}

/// A rule writes a value in the singular field or in the plural one, as
/// Azure writes it, never both.
fn one_of(n: &Node<'_>, single: &str, plural: &str, both: bool) -> Result<(), LoadError> {
    if both {
        return Err(n.field_error(
            plural,
            format!("set beside {single}: a rule has one or the other, as Azure writes it"),
        ));
    }
    Ok(())
}

/// Parses one security rule (spec §1.1).
pub fn parse_rule(n: &Node<'_>, kind: RuleKind, nsg_id: &str) -> Result<SecurityRule, LoadError> {
    let name = n.req_str("name")?.to_string();
    let field_err = |key: &str, e: netwatch_rules::FieldError| n.field_error(key, e.to_string());
    let protocol = Protocol::parse(n.req_str("protocol")?).map_err(|e| field_err("protocol", e))?;
    let access = Access::parse(n.req_str("access")?).map_err(|e| field_err("access", e))?;
    let direction = Direction::parse(n.req_str("direction")?).map_err(|e| field_err("direction", e))?;
    let priority = n
        .u64("priority")?
        .ok_or_else(|| n.field_error("priority", "missing required field"))?;
    let priority = match kind {
        RuleKind::User if !(100..=4096).contains(&priority) => {
            return Err(n.field_error("priority", format!("{priority} is not a priority from 100 to 4096")));
        }
        // Azure's default rules sit at 65000-65500 (spec §1.3, §1.4).
        RuleKind::Default if !(65000..=65500).contains(&priority) => {
            return Err(n.field_error("priority", format!("{priority} is not a default rule priority from 65000 to 65500")));
        }
        _ => u32::try_from(priority).map_err(|_| n.field_error("priority", format!("{priority} is too large")))?,
    };

    let mut written = WrittenFields::default();
    let addr =
        |single: &str, plural: &str, w_single: &mut Option<String>, w_plural: &mut Vec<String>| -> Result<Vec<AddressPrefix>, LoadError> {
            let mut out = Vec::new();
            if let Some(s) = n.str(single)? {
                if !s.trim().is_empty() {
                    out.push(AddressPrefix::parse(s).map_err(|e| field_err(single, e))?);
                    *w_single = Some(s.to_string());
                }
            }
            let list = n.str_array(plural)?;
            one_of(n, single, plural, !out.is_empty() && !list.is_empty())?;
            if list.len() > MAX_ADDRESSES {
                let side = single.strip_suffix("AddressPrefix").unwrap_or(single);
                return Err(n.field_error(
                    plural,
                    format!(
                        "{} addresses and ranges; Azure allows at most {} in a rule's {side}",
                        thousands(list.len()),
                        thousands(MAX_ADDRESSES)
                    ),
                ));
            }
            for (i, (s, _)) in list.into_iter().enumerate() {
                let p = AddressPrefix::parse(s).map_err(|e| field_err(&format!("{plural}[{i}]"), e))?;
                // Azure refuses tags and `*` in the plural field
                // (SecurityRuleParameterContainsUnsupportedValue).
                if !matches!(p, AddressPrefix::Prefix(_)) {
                    return Err(n.field_error(
                        &format!("{plural}[{i}]"),
                        format!(
                            "{}: the plural field takes IP addresses and prefixes only; a tag or * goes in {single}",
                            quoted(s)
                        ),
                    ));
                }
                out.push(p);
                w_plural.push(s.to_string());
            }
            Ok(out)
        };
    let src = addr(
        "sourceAddressPrefix",
        "sourceAddressPrefixes",
        &mut written.source_address_prefix,
        &mut written.source_address_prefixes,
    )?;
    let dst = addr(
        "destinationAddressPrefix",
        "destinationAddressPrefixes",
        &mut written.destination_address_prefix,
        &mut written.destination_address_prefixes,
    )?;
    let ports =
        |single: &str, plural: &str, w_single: &mut Option<String>, w_plural: &mut Vec<String>| -> Result<Vec<PortRange>, LoadError> {
            let mut out = Vec::new();
            if let Some(s) = n.str(single)? {
                if !s.trim().is_empty() {
                    out.push(PortRange::parse(s).map_err(|e| field_err(single, e))?);
                    *w_single = Some(s.to_string());
                }
            }
            let list = n.str_array(plural)?;
            one_of(n, single, plural, !out.is_empty() && !list.is_empty())?;
            for (i, (s, _)) in list.into_iter().enumerate() {
                out.push(PortRange::parse(s).map_err(|e| field_err(&format!("{plural}[{i}]"), e))?);
                w_plural.push(s.to_string());
            }
            Ok(out)
        };
    let sports = ports(
        "sourcePortRange",
        "sourcePortRanges",
        &mut written.source_port_range,
        &mut written.source_port_ranges,
    )?;
    let dports = ports(
        "destinationPortRange",
        "destinationPortRanges",
        &mut written.destination_port_range,
        &mut written.destination_port_ranges,
    )?;
    let asgs = |key: &str| -> Result<Vec<String>, LoadError> {
        n.array(key)?
            .into_iter()
            .map(|c| c.node().req_str("id").map(str::to_string))
            .collect()
    };
    let src_asgs = asgs("sourceApplicationSecurityGroups")?;
    let dst_asgs = asgs("destinationApplicationSecurityGroups")?;
    // One kind of side: with both, which one Azure applies is not
    // documented (evaluation took the groups and dropped the prefixes).
    for (prefixes, groups, key) in [
        (&src, &src_asgs, "sourceApplicationSecurityGroups"),
        (&dst, &dst_asgs, "destinationApplicationSecurityGroups"),
    ] {
        if !prefixes.is_empty() && !groups.is_empty() {
            return Err(n.field_error(key, "a side of a rule is address prefixes or application security groups, not both"));
        }
    }
    if src.is_empty() && src_asgs.is_empty() {
        return Err(n.field_error(
            "sourceAddressPrefix",
            "missing: a rule needs a source prefix, prefixes or application security groups",
        ));
    }
    if dst.is_empty() && dst_asgs.is_empty() {
        return Err(n.field_error(
            "destinationAddressPrefix",
            "missing: a rule needs a destination prefix, prefixes or application security groups",
        ));
    }
    if sports.is_empty() {
        return Err(n.field_error("sourcePortRange", "missing: a rule needs a source port range or ranges"));
    }
    if dports.is_empty() {
        return Err(n.field_error("destinationPortRange", "missing: a rule needs a destination port range or ranges"));
    }
    // Azure refuses a longer one (spec §1.1); characters, not UTF-8 bytes.
    let description = n.str("description")?;
    if let Some(len) = description.map(|d| d.chars().count()).filter(|&len| len > 140) {
        return Err(n.field_error(
            "description",
            format!("{len} characters long; a rule's description has at most 140"),
        ));
    }
    let collection = kind.collection();
    Ok(SecurityRule {
        id: Some(
            n.str("id")?
                .map(str::to_string)
                .unwrap_or_else(|| format!("{nsg_id}/{collection}/{name}")),
        ),
        name,
        kind,
        description: description.map(str::to_string),
        priority,
        direction,
        access,
        protocol,
        source_address_prefixes: src,
        source_port_ranges: sports,
        destination_address_prefixes: dst,
        destination_port_ranges: dports,
        source_application_security_groups: src_asgs,
        destination_application_security_groups: dst_asgs,
        written,
    })
}

/// Envelope keys of an ARM resource; every other key belongs in `properties`.
const ENVELOPE: &[&str] = &[
    "name",
    "id",
    "etag",
    "type",
    "location",
    "tags",
    "properties",
    "sku",
    "zones",
    "extendedLocation",
    "kind",
];

/// The ARM spelling of the keys of a security rule, envelope and
/// properties, that the loader reads (without case, as ARM does) or Azure
/// writes: output in this spelling whatever the input's.
const RULE_KEYS: &[&str] = &[
    "provisioningState",
    "description",
    "protocol",
    "sourcePortRange",
    "destinationPortRange",
    "sourceAddressPrefix",
    "destinationAddressPrefix",
    "sourceAddressPrefixes",
    "destinationAddressPrefixes",
    "sourcePortRanges",
    "destinationPortRanges",
    "sourceApplicationSecurityGroups",
    "destinationApplicationSecurityGroups",
    "access",
    "priority",
    "direction",
];

/// `key` in its ARM spelling when it is one of the keys above (or of the
/// envelope) in another case; as written otherwise.
fn arm_key(key: &str) -> &str {
    ENVELOPE
        .iter()
        .chain(RULE_KEYS)
        .find(|k| k.eq_ignore_ascii_case(key))
        .copied()
        .unwrap_or(key)
}

/// An object being built in the ARM spelling: of two keys that are one
/// without case, the one the loader reads wins (see [`arm_shape`]).
#[derive(Default)]
struct Spelled {
    map: Map<String, Value>,
    rank: HashMap<String, u8>,
}

impl Spelled {
    fn insert(&mut self, key: &str, rank: u8, value: Value) {
        let k = arm_key(key);
        // Exact spelling first, then another case.
        let rank = 2 * rank + u8::from(k != key);
        if self.rank.get(k).is_some_and(|&r| r <= rank) {
            return;
        }
        self.rank.insert(k.to_string(), rank);
        self.map.insert(k.to_string(), value);
    }
}

/// A value of a rule in the ARM shape: the application security group
/// references (`{"ID": ...}`) with their key spelled `id`.
fn arm_value(doc: &Document, key: &str, v: &Json) -> Value {
    let asgs = arm_key(key).ends_with("ApplicationSecurityGroups");
    match v {
        Json::Array(_) if asgs => Value::Array(
            doc.elements(v)
                .iter()
                .map(|x| match x {
                    Json::Object(_) => {
                        let mut o = Spelled::default();
                        for (k, val) in doc.members(x) {
                            o.insert(doc.str(*k), 0, doc.to_value(val));
                        }
                        Value::Object(o.map)
                    }
                    other => doc.to_value(other),
                })
                .collect(),
        ),
        _ => doc.to_value(v),
    }
}

/// A resource in the ARM shape: az CLI's flattened fields moved under
/// `properties`, the az-only `resourceGroup` dropped, and the keys the
/// loader reads without case spelled as ARM spells them (`NAME` is
/// `name`). Where two copies of a key are written (at the top level and
/// under `properties`, or in two cases), the one the loader reads wins: the
/// top level's, the exact spelling's.
pub fn arm_shape(doc: &Document, v: &Json) -> Value {
    let Json::Object(_) = v else { return doc.to_value(v) };
    let mut out = Spelled::default();
    // `Properties` is `properties`, as the loader reads it.
    let written = super::json::properties(doc, v);
    let mut props = Spelled::default();
    if let Some((_, p @ Json::Object(_))) = written {
        for (k, val) in doc.members(p) {
            let k = doc.str(*k);
            props.insert(k, 1, arm_value(doc, k, val));
        }
    }
    for (key, val) in doc.members(v) {
        let k = doc.str(*key);
        if written.is_some_and(|(w, _)| w == *key) {
            continue;
        }
        let canon = arm_key(k);
        if canon.eq_ignore_ascii_case("properties") {
            // Another copy of `properties` in another case: not read.
            continue;
        }
        if ENVELOPE.contains(&canon) {
            out.insert(k, 0, doc.to_value(val));
        } else if !k.eq_ignore_ascii_case("resourceGroup") && !matches!(val, Json::Null) {
            props.insert(k, 0, arm_value(doc, k, val));
        }
    }
    out.map.insert("properties".into(), Value::Object(props.map));
    Value::Object(out.map)
}

/// A rule as ARM JSON (used for default rules that were not in the input).
pub fn rule_to_arm_json(r: &SecurityRule) -> Value {
    let mut p = Map::new();
    p.insert("provisioningState".into(), "Succeeded".into());
    if let Some(d) = &r.description {
        p.insert("description".into(), d.clone().into());
    }
    p.insert("protocol".into(), r.protocol.as_str().into());
    let w = &r.written;
    let put = |p: &mut Map<String, Value>, k: &str, s: &Option<String>, pl: &[String], pk: &str| {
        if let Some(s) = s {
            p.insert(k.into(), s.clone().into());
        }
        p.insert(pk.into(), Value::Array(pl.iter().map(|x| Value::String(x.clone())).collect()));
    };
    put(
        &mut p,
        "sourcePortRange",
        &w.source_port_range,
        &w.source_port_ranges,
        "sourcePortRanges",
    );
    put(
        &mut p,
        "destinationPortRange",
        &w.destination_port_range,
        &w.destination_port_ranges,
        "destinationPortRanges",
    );
    put(
        &mut p,
        "sourceAddressPrefix",
        &w.source_address_prefix,
        &w.source_address_prefixes,
        "sourceAddressPrefixes",
    );
    put(
        &mut p,
        "destinationAddressPrefix",
        &w.destination_address_prefix,
        &w.destination_address_prefixes,
        "destinationAddressPrefixes",
    );
    p.insert("access".into(), r.access.as_str().into());
    p.insert("priority".into(), r.priority.into());
    p.insert("direction".into(), r.direction.as_str().into());
    let mut o = Map::new();
    o.insert("name".into(), r.name.clone().into());
    if let Some(id) = &r.id {
        o.insert("id".into(), id.clone().into());
    }
    o.insert("properties".into(), Value::Object(p));
    Value::Object(o)
}

// ---------------------------------------------------------------- VNets

/// `Microsoft.Network/virtualNetworks`.
#[derive(Clone, Debug)]
pub struct VirtualNetwork {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub address_space: Vec<IpPrefix>,
    pub subnets: Vec<Subnet>,
    pub peerings: Vec<VirtualNetworkPeering>,
}

/// A subnet of a VNet.
#[derive(Clone, Debug)]
pub struct Subnet {
    pub id: String,
    pub name: String,
    pub address_prefixes: Vec<IpPrefix>,
    /// Where each of `address_prefixes` is written.
    pub address_prefixes_at: Vec<Location>,
    pub network_security_group_id: Option<String>,
    /// Where `network_security_group_id` is written (for a reference to an
    /// NSG that is not loaded).
    pub network_security_group_at: Option<Location>,
    pub route_table_id: Option<String>,
    /// Where `route_table_id` is written.
    pub route_table_at: Option<Location>,
    /// `serviceEndpoints[]`.
    pub service_endpoints: Vec<ServiceEndpoint>,
}

/// A subnet's service endpoint (`serviceEndpoints[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoint {
    /// `service`, e.g. `Microsoft.Storage`.
    pub service: String,
    /// `locations`: the regions whose service prefixes the endpoint routes
    /// (e.g. `westeurope` and its pair `northeurope`), or `*` for every
    /// region. Empty when absent: the VNet's region.
    pub locations: Vec<String>,
}

impl From<&str> for ServiceEndpoint {
    /// An endpoint without `locations`.
    fn from(service: &str) -> Self {
        ServiceEndpoint {
            service: service.to_string(),
            locations: Vec::new(),
        }
    }
}

/// A VNet peering.
#[derive(Clone, Debug)]
pub struct VirtualNetworkPeering {
    pub name: String,
    pub remote_virtual_network_id: String,
    /// `peeringState`: `Connected`, `Initiated`, `Disconnected`.
    pub peering_state: String,
    pub allow_gateway_transit: bool,
    pub use_remote_gateways: bool,
    /// `remoteAddressSpace`, when the export carries it.
    pub remote_address_space: Vec<IpPrefix>,
    /// Where the peering is written (for a peer whose space is unknown).
    pub at: Location,
}

impl VirtualNetworkPeering {
    /// Peering routes and the `VirtualNetwork` tag count only connected peerings.
    pub fn is_connected(&self) -> bool {
        self.peering_state.eq_ignore_ascii_case("Connected")
    }
}

/// Parses a standalone or nested subnet.
pub fn parse_subnet(n: &Node<'_>, vnet_id: &str) -> Result<Subnet, LoadError> {
    let name = n.req_str("name")?.to_string();
    let id = n
        .str("id")?
        .map(str::to_string)
        .unwrap_or_else(|| format!("{vnet_id}/subnets/{name}"));
    let (mut address_prefixes, mut address_prefixes_at) = (Vec::new(), Vec::new());
    // `str` rejects a value of another type (an array, a number) by name.
    if let (Some(s), Some(c)) = (n.str("addressPrefix")?, n.field("addressPrefix")) {
        address_prefixes.push(prefix(&c, s)?);
        address_prefixes_at.push(c.location());
    }
    for (s, at) in n.str_array("addressPrefixes")? {
        address_prefixes.push(prefix(&at, s)?);
        address_prefixes_at.push(at.location());
    }
    let service_endpoints = n
        .array("serviceEndpoints")?
        .into_iter()
        .map(|c| {
            let e = c.node();
            Ok(ServiceEndpoint {
                service: e.req_str("service")?.to_string(),
                locations: e.str_array("locations")?.into_iter().map(|(l, _)| l.trim().to_string()).collect(),
            })
        })
        .collect::<Result<_, LoadError>>()?;
    Ok(Subnet {
        id,
        name,
        address_prefixes,
        address_prefixes_at,
        network_security_group_id: n.reference("networkSecurityGroup")?.map(str::to_string),
        network_security_group_at: n.reference_location("networkSecurityGroup"),
        route_table_id: n.reference("routeTable")?.map(str::to_string),
        route_table_at: n.reference_location("routeTable"),
        service_endpoints,
    })
}

/// The address prefixes of a VNet for a message: the first few, and how
/// many more (a VNet may have hundreds).
fn space_in_words(space: &[IpPrefix]) -> String {
    const SHOWN: usize = 8;
    if space.is_empty() {
        return "none".to_string();
    }
    let mut words: Vec<String> = space.iter().take(SHOWN).map(ToString::to_string).collect();
    if space.len() > SHOWN {
        words.push(format!("and {} more", space.len() - SHOWN));
    }
    words.join(", ")
}

/// A subnet's prefixes must each lie inside one of its VNet's address
/// prefixes: Azure refuses to create a subnet outside the address space
/// (the error names the prefix, where it is written, and the space). The
/// prefixes checked are those read from a file (with their place in
/// [`Subnet::address_prefixes_at`]).
pub fn check_subnet_in_address_space(subnet: &Subnet, vnet: &VirtualNetwork) -> Result<(), LoadError> {
    for (p, at) in subnet.address_prefixes.iter().zip(&subnet.address_prefixes_at) {
        let inside = vnet
            .address_space
            .iter()
            .any(|space| space.addr().is_ipv4() == p.addr().is_ipv4() && space.len() <= p.len() && space.contains(p.addr()));
        if inside {
            continue;
        }
        let message = format!(
            "{} of subnet {} is not within the address space of virtual network {} ({}); \
             expected a prefix inside one of the virtual network's address prefixes, as Azure requires",
            quoted(&p.to_string()),
            quoted(&subnet.name),
            quoted(&vnet.name),
            space_in_words(&vnet.address_space)
        );
        return Err(LoadError::Invalid { at: at.clone(), message });
    }
    Ok(())
}

/// Parses a VNet peering of the VNet `vnet_id` (named `vnet_name`): its
/// remote VNet must be another VNet (Azure refuses to peer a VNet with
/// itself).
pub fn parse_peering(n: &Node<'_>, vnet_id: &str, vnet_name: &str) -> Result<VirtualNetworkPeering, LoadError> {
    let remote = n
        .reference("remoteVirtualNetwork")?
        .ok_or_else(|| n.field_error("remoteVirtualNetwork", "missing: a peering needs remoteVirtualNetwork.id"))?;
    if id_key(remote) == id_key(vnet_id) {
        let message = format!(
            "peering {}: remoteVirtualNetwork {} is virtual network {} itself; \
             expected the id of another virtual network (Azure refuses to peer a virtual network with itself)",
            quoted(n.str("name")?.unwrap_or("")),
            quoted(remote),
            quoted(vnet_name)
        );
        return Err(match n.reference_location("remoteVirtualNetwork") {
            Some(at) => LoadError::Invalid { at, message },
            None => n.field_error("remoteVirtualNetwork", message),
        });
    }
    let remote_address_space = match n.object("remoteAddressSpace")? {
        Some(c) => prefixes(&c.node(), "addressPrefixes")?,
        None => Vec::new(),
    };
    Ok(VirtualNetworkPeering {
        name: n.req_str("name")?.to_string(),
        remote_virtual_network_id: remote.to_string(),
        peering_state: n.str("peeringState")?.unwrap_or("Connected").to_string(),
        allow_gateway_transit: n.bool("allowGatewayTransit")?.unwrap_or(false),
        use_remote_gateways: n.bool("useRemoteGateways")?.unwrap_or(false),
        remote_address_space,
        at: n.location(),
    })
}

/// Parses `Microsoft.Network/virtualNetworks`.
pub fn parse_vnet(n: &Node<'_>) -> Result<VirtualNetwork, LoadError> {
    let (id, name) = id_and_name(n, "virtualNetworks")?;
    let address_space = match n.object("addressSpace")? {
        Some(c) => prefixes(&c.node(), "addressPrefixes")?,
        None => Vec::new(),
    };
    let subnets = n
        .array("subnets")?
        .iter()
        .map(|c| parse_subnet(&c.node(), &id))
        .collect::<Result<_, _>>()?;
    let peerings = n
        .array("virtualNetworkPeerings")?
        .iter()
        .map(|c| parse_peering(&c.node(), &id, &name))
        .collect::<Result<_, _>>()?;
    let vnet = VirtualNetwork {
        id,
        name,
        location: n.str("location")?.map(str::to_string),
        address_space,
        subnets,
        peerings,
    };
    for s in &vnet.subnets {
        check_subnet_in_address_space(s, &vnet)?;
    }
    Ok(vnet)
}

// ---------------------------------------------------------------- NICs

/// `Microsoft.Network/networkInterfaces`.
#[derive(Clone, Debug)]
pub struct NetworkInterface {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    /// As Azure writes it, e.g. `00-0D-3A-D5-3B-86`.
    pub mac_address: Option<String>,
    pub virtual_machine_id: Option<String>,
    pub network_security_group_id: Option<String>,
    /// Where `network_security_group_id` is written (for a reference to an
    /// NSG that is not loaded).
    pub network_security_group_at: Option<Location>,
    pub enable_ip_forwarding: bool,
    pub ip_configurations: Vec<IpConfiguration>,
}

/// One IP configuration of a NIC.
#[derive(Clone, Debug)]
pub struct IpConfiguration {
    pub id: String,
    pub name: String,
    pub private_ip_address: Option<IpAddr>,
    pub subnet_id: Option<String>,
    /// Where `subnet_id` is written (for a subnet that is not loaded).
    pub subnet_at: Option<Location>,
    pub primary: bool,
    pub application_security_group_ids: Vec<String>,
    /// Where the IP configuration is.
    pub at: Location,
}

/// Parses `Microsoft.Network/networkInterfaces`.
pub fn parse_nic(n: &Node<'_>) -> Result<NetworkInterface, LoadError> {
    let (id, name) = id_and_name(n, "networkInterfaces")?;
    let configs = n.array("ipConfigurations")?;
    // Azure refuses a NIC without one (the primary); without it every
    // question about the NIC fails later, far from the file.
    if configs.is_empty() {
        return Err(n.field_error("ipConfigurations", "a network interface needs at least one IP configuration"));
    }
    let mut ip_configurations = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let c = c.node();
        let cname = c.str("name")?.map(str::to_string).unwrap_or_else(|| format!("ipconfig{}", i + 1));
        let private_ip_address = match c.field("privateIPAddress") {
            None => None,
            Some(ch) => {
                let node = ch.node();
                let s = ch.as_str().ok_or_else(|| node.error("expected a string"))?;
                Some(
                    s.trim()
                        .parse::<IpAddr>()
                        .map_err(|_| node.error(format!("{} is not an IP address", quoted(s))))?,
                )
            }
        };
        let asgs = c
            .array("applicationSecurityGroups")?
            .into_iter()
            .map(|a| a.node().req_str("id").map(str::to_string))
            .collect::<Result<_, _>>()?;
        ip_configurations.push(IpConfiguration {
            id: c
                .str("id")?
                .map(str::to_string)
                .unwrap_or_else(|| format!("{id}/ipConfigurations/{cname}")),
            name: cname,
            private_ip_address,
            subnet_id: c.reference("subnet")?.map(str::to_string),
            subnet_at: c.reference_location("subnet"),
            primary: c.bool("primary")?.unwrap_or(i == 0),
            application_security_group_ids: asgs,
            at: c.location(),
        });
    }
    Ok(NetworkInterface {
        id,
        name,
        location: n.str("location")?.map(str::to_string),
        mac_address: n.str("macAddress")?.map(str::to_string),
        virtual_machine_id: n.reference("virtualMachine")?.map(str::to_string),
        network_security_group_id: n.reference("networkSecurityGroup")?.map(str::to_string),
        network_security_group_at: n.reference_location("networkSecurityGroup"),
        enable_ip_forwarding: n.bool("enableIPForwarding")?.unwrap_or(false),
        ip_configurations,
    })
}

// ---------------------------------------------------------------- the rest

/// `Microsoft.Network/applicationSecurityGroups`.
#[derive(Clone, Debug)]
pub struct ApplicationSecurityGroup {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
}

/// `Microsoft.Network/routeTables`, checked as it is read (spec §5.3, by
/// the routing crate's [`check_route_table`]): every command refuses a bad
/// table, not only those that build routes.
#[derive(Clone, Debug)]
pub struct RouteTable {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub disable_bgp_route_propagation: bool,
    pub routes: Vec<Route>,
    /// Where the table is written.
    pub at: Location,
    /// Where its `routes` list is (the table's place when absent).
    pub routes_at: Location,
}

/// A user-defined route, as written, with its checked `addressPrefix`.
#[derive(Clone, Debug)]
pub struct Route {
    pub id: Option<String>,
    pub name: String,
    /// A CIDR or a service tag name.
    pub address_prefix: String,
    pub next_hop_type: String,
    pub next_hop_ip_address: Option<String>,
    /// `hasBgpOverride`: overrides overlapping BGP routes (spec §5.3).
    pub has_bgp_override: bool,
    /// `addressPrefix` as checked: a CIDR with host bits clear, or a
    /// service tag name (known or not: that needs the tags file).
    pub destination: RouteDestination,
    pub at: Location,
    /// Where each field present is written.
    fields_at: Vec<(RouteField, Location)>,
}

impl Route {
    /// Where `field` of the route is written (the route's place when it is
    /// absent).
    pub fn location_of(&self, field: RouteField) -> &Location {
        self.fields_at.iter().find(|(f, _)| *f == field).map_or(&self.at, |(_, at)| at)
    }

    /// The route as the routing crate takes it.
    pub fn routing_input(&self) -> UserRoute {
        UserRoute {
            name: self.name.clone(),
            address_prefix: self.address_prefix.clone(),
            next_hop_type: self.next_hop_type.clone(),
            next_hop_ip: self.next_hop_ip_address.clone(),
            has_bgp_override: self.has_bgp_override,
        }
    }
}

impl RouteTable {
    /// The table as the routing crate takes it.
    pub fn routing_input(&self) -> RouteTableInput {
        RouteTableInput {
            id: self.id.clone(),
            disable_bgp_route_propagation: self.disable_bgp_route_propagation,
            routes: self.routes.iter().map(Route::routing_input).collect(),
        }
    }

    /// Where in the files a routing error about this table is: the route
    /// and field it names ([`RouteError::site`]), else the route list or
    /// the table.
    pub fn location_of(&self, e: &RouteError) -> &Location {
        match e.site() {
            Some(RouteErrorSite::Route { index, field }) => self.routes.get(index).map_or(&self.routes_at, |r| r.location_of(field)),
            Some(RouteErrorSite::Routes) => &self.routes_at,
            None => &self.at,
        }
    }
}

/// Parses `Microsoft.Network/routeTables` and checks it (spec §5.3): an
/// error names the file and JSON path of the route and field at fault, or
/// of the route list for a table-wide limit.
pub fn parse_route_table(n: &Node<'_>) -> Result<RouteTable, LoadError> {
    let (id, name) = id_and_name(n, "routeTables")?;
    let items = n.array("routes")?;
    // Each route as written: its id, fields and places.
    let mut written = Vec::with_capacity(items.len());
    for (i, c) in items.iter().enumerate() {
        let r = c.node();
        let route = || -> Result<(Option<String>, UserRoute), LoadError> {
            let user = UserRoute {
                name: r.req_str("name")?.to_string(),
                address_prefix: r.req_str("addressPrefix")?.to_string(),
                next_hop_type: r.req_str("nextHopType")?.to_string(),
                next_hop_ip: r.str("nextHopIpAddress")?.map(str::to_string).filter(|s| !s.is_empty()),
                has_bgp_override: r.bool("hasBgpOverride")?.unwrap_or(false),
            };
            Ok((r.str("id")?.map(str::to_string), user))
        };
        // Named as the routing crate names them when it checks a route.
        let (route_id, user) = route().map_err(|e| match e {
            LoadError::Invalid { at, message } => {
                let route = r.str("name").ok().flatten().map_or_else(|| format!("#{i}"), str::to_string);
                LoadError::Invalid {
                    at,
                    message: format!("route table {id}: route {route}: {message}"),
                }
            }
            other => other,
        })?;
        let fields_at: Vec<(RouteField, Location)> = [
            RouteField::Name,
            RouteField::AddressPrefix,
            RouteField::NextHopType,
            RouteField::NextHopIpAddress,
        ]
        .into_iter()
        .filter_map(|f| r.field(f.arm_name()).map(|c| (f, c.location())))
        .collect();
        written.push((route_id, user, r.location(), fields_at));
    }
    let input = RouteTableInput {
        id,
        disable_bgp_route_propagation: n.bool("disableBgpRoutePropagation")?.unwrap_or(false),
        routes: written.iter().map(|(_, user, _, _)| user.clone()).collect(),
    };
    // An error sits at the field itself, as the file spells it (or where
    // it belongs when missing), or at the route list for a table limit.
    let checked = check_route_table(&input).map_err(|e| match e.site() {
        Some(RouteErrorSite::Route { index, field }) => match items.get(index) {
            Some(c) => c.node().field_error(field.arm_name(), e.to_string()),
            None => n.error(e.to_string()),
        },
        Some(RouteErrorSite::Routes) => n.field_error("routes", e.to_string()),
        None => n.error(e.to_string()),
    })?;
    let routes = written
        .into_iter()
        .zip(checked)
        .map(|((route_id, user, at, fields_at), c)| Route {
            id: route_id,
            name: user.name,
            address_prefix: user.address_prefix,
            next_hop_type: user.next_hop_type,
            next_hop_ip_address: user.next_hop_ip,
            has_bgp_override: user.has_bgp_override,
            destination: c.destination,
            at,
            fields_at,
        })
        .collect();
    Ok(RouteTable {
        id: input.id,
        name,
        location: n.str("location")?.map(str::to_string),
        disable_bgp_route_propagation: input.disable_bgp_route_propagation,
        routes,
        at: n.location(),
        routes_at: n.field("routes").map_or_else(|| n.location(), |c| c.location()),
    })
}

/// `Microsoft.Network/virtualNetworkGateways`.
#[derive(Clone, Debug)]
pub struct VirtualNetworkGateway {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    /// `Vpn` or `ExpressRoute`.
    pub gateway_type: Option<String>,
    /// The VNet of the gateway's `GatewaySubnet`.
    pub virtual_network_id: Option<String>,
    /// `bgpSettings.bgpPeeringAddress`: one address, or one per instance
    /// of an active-active gateway (the list Azure writes comma-separated).
    pub bgp_peering_addresses: Vec<IpAddr>,
}

/// Parses `Microsoft.Network/virtualNetworkGateways`.
pub fn parse_vng(n: &Node<'_>) -> Result<VirtualNetworkGateway, LoadError> {
    let (id, name) = id_and_name(n, "virtualNetworkGateways")?;
    let mut virtual_network_id = None;
    for c in n.array("ipConfigurations")? {
        if let Some(subnet) = c.node().reference("subnet")? {
            virtual_network_id = Some(parent_id(subnet).to_string());
        }
    }
    let bgp = match n.object("bgpSettings")? {
        Some(c) => {
            let settings = c.node();
            settings
                .str("bgpPeeringAddress")?
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .map(|a| {
                            a.parse::<IpAddr>().map_err(|_| {
                                settings.field_error(
                                    "bgpPeeringAddress",
                                    format!(
                                        "{} is not an IP address (expected an address or a comma-separated list of them)",
                                        quoted(a)
                                    ),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    Ok(VirtualNetworkGateway {
        id,
        name,
        location: n.str("location")?.map(str::to_string),
        gateway_type: n.str("gatewayType")?.map(str::to_string),
        virtual_network_id,
        bgp_peering_addresses: bgp,
    })
}

/// `Microsoft.Network/localNetworkGateways`: an on-premises site.
#[derive(Clone, Debug)]
pub struct LocalNetworkGateway {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    pub address_prefixes: Vec<IpPrefix>,
    pub gateway_ip_address: Option<String>,
}

/// Parses `Microsoft.Network/localNetworkGateways`.
pub fn parse_lng(n: &Node<'_>) -> Result<LocalNetworkGateway, LoadError> {
    let (id, name) = id_and_name(n, "localNetworkGateways")?;
    let address_prefixes = match n.object("localNetworkAddressSpace")? {
        Some(c) => prefixes(&c.node(), "addressPrefixes")?,
        None => Vec::new(),
    };
    Ok(LocalNetworkGateway {
        id,
        name,
        location: n.str("location")?.map(str::to_string),
        address_prefixes,
        gateway_ip_address: n.str("gatewayIpAddress")?.map(str::to_string),
    })
}

/// `Microsoft.Network/connections`.
#[derive(Clone, Debug)]
pub struct Connection {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    /// `IPsec`, `Vnet2Vnet`, `ExpressRoute`.
    pub connection_type: Option<String>,
    pub virtual_network_gateway1_id: Option<String>,
    pub virtual_network_gateway2_id: Option<String>,
    pub local_network_gateway2_id: Option<String>,
    /// `connectionStatus`; absent in exported templates, then taken as connected.
    pub connection_status: Option<String>,
}

impl Connection {
    /// Whether the connection carries traffic now.
    pub fn is_connected(&self) -> bool {
        self.connection_status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("Connected"))
    }
}

/// Parses `Microsoft.Network/connections`.
pub fn parse_connection(n: &Node<'_>) -> Result<Connection, LoadError> {
    let (id, name) = id_and_name(n, "connections")?;
    Ok(Connection {
        id,
        name,
        location: n.str("location")?.map(str::to_string),
        connection_type: n.str("connectionType")?.map(str::to_string),
        virtual_network_gateway1_id: n.reference("virtualNetworkGateway1")?.map(str::to_string),
        virtual_network_gateway2_id: n.reference("virtualNetworkGateway2")?.map(str::to_string),
        local_network_gateway2_id: n.reference("localNetworkGateway2")?.map(str::to_string),
        connection_status: n.str("connectionStatus")?.map(str::to_string),
    })
}

/// `Microsoft.Compute/virtualMachines`.
#[derive(Clone, Debug)]
pub struct VirtualMachine {
    pub id: String,
    pub name: String,
    pub location: Option<String>,
    /// `networkProfile.networkInterfaces[]`: id and whether primary.
    pub network_interfaces: Vec<(String, bool)>,
}

/// Parses `Microsoft.Compute/virtualMachines`.
pub fn parse_vm(n: &Node<'_>) -> Result<VirtualMachine, LoadError> {
    let (id, name) = id_and_name(n, "virtualMachines")?;
    let mut nics = Vec::new();
    if let Some(p) = n.object("networkProfile")? {
        for (i, c) in p.node().array("networkInterfaces")?.iter().enumerate() {
            let c = c.node();
            let nid = c.req_str("id")?.to_string();
            nics.push((nid, c.bool("primary")?.unwrap_or(i == 0)));
        }
    }
    Ok(VirtualMachine {
        id,
        name,
        location: n.str("location")?.map(str::to_string),
        network_interfaces: nics,
    })
}

/// Parses `Microsoft.Network/applicationSecurityGroups`.
pub fn parse_asg(n: &Node<'_>) -> Result<ApplicationSecurityGroup, LoadError> {
    let (id, name) = id_and_name(n, "applicationSecurityGroups")?;
    Ok(ApplicationSecurityGroup {
        id,
        name,
        location: n.str("location")?.map(str::to_string),
    })
}

/// A BGP route learned by a gateway, one element of
/// `az network vnet-gateway list-learned-routes` (`GatewayRoute`):
/// `{"localAddress", "network", "nextHop", "sourcePeer", "origin", "asPath", "weight"}`.
#[derive(Clone, Debug)]
pub struct LearnedRoute {
    /// The gateway's BGP address that learned it: ties the route to its gateway.
    pub local_address: Option<IpAddr>,
    pub network: IpPrefix,
    pub next_hop: Option<IpAddr>,
    /// `EBgp`, `IBgp` or `Network` (the gateway's own VNet prefixes).
    pub origin: String,
    pub as_path: Option<String>,
}

/// Parses one learned route.
pub fn parse_learned_route(n: &Node<'_>) -> Result<LearnedRoute, LoadError> {
    let ip = |key: &str| -> Result<Option<IpAddr>, LoadError> {
        match n.str(key)? {
            None => Ok(None),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| n.field_error(key, format!("{} is not an IP address", quoted(s)))),
        }
    };
    let net = n.req_str("network")?;
    let network = net
        .parse::<IpPrefix>()
        .map_err(|e| n.field_error("network", format!("{} is not a CIDR prefix: {e}", quoted(net))))?;
    // As for every other prefix: host bits set are refused, not cleared.
    if let Some(network) = network.host_bits_network(net) {
        return Err(n.field_error(
            "network",
            format!(
                "{} is not a CIDR prefix: its host bits are set, which Azure never writes in a learned route (expected the network, {network})",
                quoted(net)
            ),
        ));
    }
    Ok(LearnedRoute {
        local_address: ip("localAddress")?,
        network,
        next_hop: ip("nextHop")?,
        origin: n.req_str("origin")?.to_string(),
        as_path: n.str("asPath")?.map(str::to_string),
    })
}
