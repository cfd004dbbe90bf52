//! The Azure resource model: loading real Azure JSON (az CLI or REST shape)
//! into an [`Environment`] indexed by case-insensitive id and name.

pub mod json;
pub mod resources;
pub mod service_tags;
pub mod topology;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netwatch_rules::{quoted, NetworkSecurityGroup, ServiceTagTable};
use thiserror::Error;

use json::Json;
pub use json::Location;
pub use resources::*;
pub use topology::UnknownPeerAddressSpace;

/// Errors loading resources or service tags. Each names the file and where
/// in it, and what was expected.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: line {line}, column {column}: not valid JSON: {message}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
}

/// The text of a JSON file: UTF-8, with or without a byte-order mark (as
/// PowerShell's `Out-File` writes it), or UTF-16 with one (PowerShell 5.1's
/// `>` redirection).
pub fn json_text(path: &Path, bytes: Vec<u8>) -> Result<String, LoadError> {
    let invalid = |offset: usize, what: &str| LoadError::Json {
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        message: format!("byte offset {offset}: {what}; expected JSON text in UTF-8 (or UTF-16 with a byte-order mark)"),
    };
    let utf16 = |body: &[u8], from: fn([u8; 2]) -> u16| {
        if body.len() % 2 != 0 {
            return Err(invalid(bytes.len() - 1, "UTF-16 text of an odd number of bytes"));
        }
        let units: Vec<u16> = body.chunks_exact(2).map(|c| from([c[0], c[1]])).collect();
        String::from_utf16(&units).map_err(|_| invalid(2, "UTF-16 text with an unpaired surrogate"))
    };
    match bytes.as_slice() {
        [0xFF, 0xFE, body @ ..] => utf16(body, u16::from_le_bytes),
        [0xFE, 0xFF, body @ ..] => utf16(body, u16::from_be_bytes),
        [0xEF, 0xBB, 0xBF, body @ ..] => match std::str::from_utf8(body) {
            Ok(t) => Ok(t.to_string()),
            Err(e) => Err(invalid(3 + e.valid_up_to(), "not UTF-8")),
        },
        _ => String::from_utf8(bytes).map_err(|e| invalid(e.utf8_error().valid_up_to(), "not UTF-8")),
    }
}

/// The error for an ARM template export, which has no `type` or `id` at
/// its root.
const TEMPLATE: &str = "an ARM template export is not read: export the resources with `az network ... show/list` or `az resource show`";

/// Kinds of resource netwatch understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    NetworkSecurityGroup,
    VirtualNetwork,
    Subnet,
    NetworkInterface,
    ApplicationSecurityGroup,
    RouteTable,
    VirtualNetworkGateway,
    LocalNetworkGateway,
    Connection,
    VirtualMachine,
}

impl ResourceKind {
    /// From an ARM `type`, case-insensitively.
    pub fn from_type(t: &str) -> Option<Self> {
        Some(match t.to_ascii_lowercase().as_str() {
            "microsoft.network/networksecuritygroups" => Self::NetworkSecurityGroup,
            "microsoft.network/virtualnetworks" => Self::VirtualNetwork,
            "microsoft.network/virtualnetworks/subnets" => Self::Subnet,
            "microsoft.network/networkinterfaces" => Self::NetworkInterface,
            "microsoft.network/applicationsecuritygroups" => Self::ApplicationSecurityGroup,
            "microsoft.network/routetables" => Self::RouteTable,
            "microsoft.network/virtualnetworkgateways" => Self::VirtualNetworkGateway,
            "microsoft.network/localnetworkgateways" => Self::LocalNetworkGateway,
            "microsoft.network/connections" => Self::Connection,
            "microsoft.compute/virtualmachines" => Self::VirtualMachine,
            _ => return None,
        })
    }

    /// From a resource id's provider path, for input without `type`.
    fn from_id(id: &str) -> Option<Self> {
        let l = id.to_ascii_lowercase();
        let seg: Vec<&str> = l.trim_end_matches('/').split('/').collect();
        let n = seg.len();
        if n >= 4 && seg[n - 4] == "virtualnetworks" && seg[n - 2] == "subnets" {
            return Some(Self::Subnet);
        }
        if n < 2 {
            return None;
        }
        let provider = seg.iter().rposition(|s| *s == "providers")?;
        let ns = seg.get(provider + 1)?;
        let ty = seg.get(provider + 2)?;
        if provider + 4 != n {
            return None;
        }
        Self::from_type(&format!("{ns}/{ty}"))
    }
}

/// Every loaded resource, indexed for lookups by id or name.
#[derive(Debug, Default)]
pub struct Environment {
    pub network_security_groups: Vec<NetworkSecurityGroup>,
    /// The NSGs' rules as ARM JSON, same order as `network_security_groups`.
    pub network_security_group_json: Vec<NsgJson>,
    pub virtual_networks: Vec<VirtualNetwork>,
    pub network_interfaces: Vec<NetworkInterface>,
    pub application_security_groups: Vec<ApplicationSecurityGroup>,
    pub route_tables: Vec<RouteTable>,
    pub virtual_network_gateways: Vec<VirtualNetworkGateway>,
    pub local_network_gateways: Vec<LocalNetworkGateway>,
    pub connections: Vec<Connection>,
    pub virtual_machines: Vec<VirtualMachine>,
    /// BGP routes learned by gateways (`az network vnet-gateway list-learned-routes`).
    pub learned_routes: Vec<LearnedRoute>,
    pub service_tags: Option<ServiceTagTable>,
    /// Resources of types netwatch does not use, by type, for `--verbose`.
    pub skipped: BTreeMap<String, usize>,
    /// Files read.
    pub files: Vec<PathBuf>,
    index: HashMap<String, (ResourceKind, usize)>,
    /// Resources loaded so far (VNets and standalone subnets count), and
    /// when each VNet's last copy was: which copy of a subnet is the last.
    loaded: u64,
    vnet_loaded_at: HashMap<String, u64>,
}

/// A subnet loaded as a resource of its own, waiting for its VNet.
struct StandaloneSubnet {
    subnet: Subnet,
    at: Location,
    /// Its place in the loading order.
    loaded: u64,
}

impl Environment {
    /// Loads every resource from files and directories (recursively, `*.json`).
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Self, LoadError> {
        let mut env = Environment::default();
        let files = crate::files::collect(paths, &["json"]).map_err(|e| LoadError::Io {
            path: e.path,
            source: e.source,
        })?;
        let mut subnets = Vec::new();
        for f in files {
            // A file named on the command line (not found in a directory)
            // is meant to hold resources: say so when it holds none.
            let named = paths.iter().any(|p| p.as_ref() == f.as_path());
            env.load_file(&f, named, &mut subnets)?;
        }
        env.reindex();
        env.attach_subnets(subnets)?;
        env.reindex();
        Ok(env)
    }

    /// Loads one JSON document already in memory, as if read from `path`.
    pub fn load_str(&mut self, path: &Path, text: &str) -> Result<(), LoadError> {
        let mut subnets = Vec::new();
        self.load_text(path, text.to_string(), true, &mut subnets)?;
        self.reindex();
        self.attach_subnets(subnets)?;
        self.reindex();
        Ok(())
    }

    fn load_file(&mut self, path: &Path, named: bool, subnets: &mut Vec<StandaloneSubnet>) -> Result<(), LoadError> {
        let bytes = fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = json_text(path, bytes)?;
        self.load_text(path, text, named, subnets)
    }

    fn load_text(&mut self, path: &Path, text: String, named: bool, subnets: &mut Vec<StandaloneSubnet>) -> Result<(), LoadError> {
        let doc = Arc::new(json::Document::parse(path, text)?);
        self.files.push(path.to_path_buf());
        let file: Arc<Path> = Arc::from(path);
        let root = doc.root();
        // Accept a single resource, an array, or a `{"value": [...]}` list
        // (an object with `value`, in any case, and neither `type` nor `id`:
        // a list response of ARM or the az CLI). Each item comes with its
        // position in the document.
        let list = match root {
            Json::Object(_) if doc.entry(root, "type").is_none() && doc.entry(root, "id").is_none() => doc.entry(root, "value"),
            _ => None,
        };
        let (items, base): (Vec<(&Json, [usize; 2])>, &str) = match (root, list) {
            (_, Some((at, key, a @ Json::Array(_)))) => (
                doc.elements(a).iter().enumerate().map(|(i, v)| (v, [at, i])).collect(),
                doc.str(key),
            ),
            (_, Some((_, key, other))) => {
                return Err(LoadError::Invalid {
                    at: Location {
                        file,
                        path: doc.str(key).to_string(),
                    },
                    message: format!("expected an array (of resources), found {}", json::kind(other)),
                })
            }
            (Json::Array(_), None) => (
                doc.elements(root).iter().enumerate().map(|(i, v)| (v, [i, usize::MAX])).collect(),
                "",
            ),
            (Json::Object(_), None) => (vec![(root, [usize::MAX; 2])], "-"),
            (other, None) => {
                return Err(LoadError::Invalid {
                    at: Location { file, path: String::new() },
                    message: format!(
                        "expected a resource object, an array of resources or {{\"value\": [...]}}, found {}",
                        json::kind(other)
                    ),
                })
            }
        };
        let mut learned = Vec::new();
        let (count, mut unused) = (items.len(), 0usize);
        for (i, (item, position)) in items.into_iter().enumerate() {
            let path = match base {
                "-" => String::new(),
                "" => format!("[{i}]"),
                b => format!("{b}[{i}]"),
            };
            let node = json::Node::new(&doc, item, &file, &path);
            if !item.is_object() {
                return Err(node.error(format!("expected a resource object, found {}", json::kind(item))));
            }
            let ty = node.str("type")?;
            let (network, origin) = (node.field("network").is_some(), node.field("origin").is_some());
            if ty.is_none() && network && origin {
                learned.push(parse_learned_route(&node)?);
                continue;
            }
            let id = node.str("id")?;
            if ty.is_none() && id.is_none() {
                // Skipping it would drop data without a word (a learned
                // route lacking its origin, a list under another key).
                let missing = match (network, origin) {
                    (true, _) => "origin",
                    (false, true) => "network",
                    (false, false) => "network and origin",
                };
                if base == "-" && doc.entry(root, "$schema").is_some() && doc.entry(root, "resources").is_some() {
                    return Err(node.error(TEMPLATE));
                }
                return Err(node.error(format!(
                    "cannot tell what resource this is: no type, no id, and not a learned route (missing {missing})"
                )));
            }
            let kind = match ty {
                Some(t) => ResourceKind::from_type(t),
                None => id.and_then(ResourceKind::from_id),
            };
            let Some(kind) = kind else {
                let t = ty.unwrap_or("(no type)").to_string();
                unused += 1;
                tracing::debug!(file = %file.display(), path = %path, r#type = %t, "skipping resource of a type netwatch does not use");
                *self.skipped.entry(t).or_default() += 1;
                continue;
            };
            match kind {
                ResourceKind::NetworkSecurityGroup => {
                    let nsg = parse_nsg(&node)?;
                    let positions: Vec<usize> = position.into_iter().filter(|&p| p != usize::MAX).collect();
                    self.network_security_group_json
                        .push(NsgJson::new(doc.clone(), file.clone(), positions, nsg.id.clone()));
                    self.network_security_groups.push(nsg);
                }
                ResourceKind::VirtualNetwork => {
                    let vnet = parse_vnet(&node)?;
                    self.loaded += 1;
                    self.vnet_loaded_at.insert(id_key(&vnet.id), self.loaded);
                    self.virtual_networks.push(vnet);
                }
                ResourceKind::Subnet => {
                    let id = node.req_str("id")?;
                    self.loaded += 1;
                    subnets.push(StandaloneSubnet {
                        subnet: parse_subnet(&node, parent_id(id))?,
                        at: node.location(),
                        loaded: self.loaded,
                    });
                }
                ResourceKind::NetworkInterface => self.network_interfaces.push(parse_nic(&node)?),
                ResourceKind::ApplicationSecurityGroup => self.application_security_groups.push(parse_asg(&node)?),
                ResourceKind::RouteTable => self.route_tables.push(parse_route_table(&node)?),
                ResourceKind::VirtualNetworkGateway => self.virtual_network_gateways.push(parse_vng(&node)?),
                ResourceKind::LocalNetworkGateway => self.local_network_gateways.push(parse_lng(&node)?),
                ResourceKind::Connection => self.connections.push(parse_connection(&node)?),
                ResourceKind::VirtualMachine => self.virtual_machines.push(parse_vm(&node)?),
            }
        }
        // A file given on purpose that holds nothing usable is worth a word
        // (a list of another resource type).
        if named && unused == count && count > 0 {
            tracing::warn!("{}: no resource netwatch uses in this file", file.display());
        }
        // A learned-routes dump is a gateway's whole table at one time: a
        // later dump of the same gateway (BGP address) replaces the earlier
        // one, as a later copy of any resource does.
        if !learned.is_empty() {
            self.learned_routes
                .retain(|r| !learned.iter().any(|n: &LearnedRoute| n.local_address == r.local_address));
            self.learned_routes.extend(learned);
        }
        Ok(())
    }

    /// Standalone subnets (`az network vnet subnet show`) join their VNet
    /// (its last copy: call after [`Self::reindex`]). Of two copies of a
    /// subnet, the one loaded last wins, as for any resource: a standalone
    /// subnet replaces the VNet's nested copy unless the VNet was loaded
    /// after it; a subnet the VNet's copy lacks is added either way.
    fn attach_subnets(&mut self, subnets: Vec<StandaloneSubnet>) -> Result<(), LoadError> {
        for StandaloneSubnet { subnet: s, at, loaded } in subnets {
            let parent = id_key(parent_id(&s.id));
            let vnet_loaded = self.vnet_loaded_at.get(&parent).copied().unwrap_or(0);
            let Some(v) = self.virtual_networks.iter_mut().find(|v| id_key(&v.id) == parent) else {
                return Err(LoadError::Invalid {
                    at,
                    message: format!(
                        "subnet {} belongs to virtual network {}, which is not among the loaded resources",
                        quoted(&s.name),
                        quoted(parent_id(&s.id))
                    ),
                });
            };
            let key = id_key(&s.id);
            let nested = v.subnets.iter().position(|x| id_key(&x.id) == key);
            if nested.is_some() && loaded <= vnet_loaded {
                // The VNet's later copy of the subnet wins.
                continue;
            }
            // The copy used must lie in the VNet's address space (the
            // VNet's own copies were checked as it was read).
            check_subnet_in_address_space(&s, v)?;
            match nested {
                Some(i) => v.subnets[i] = s,
                None => v.subnets.push(s),
            }
        }
        Ok(())
    }

    /// Rebuilds the id index; a resource loaded twice keeps its last copy.
    fn reindex(&mut self) {
        /// Which elements to keep: the last of each id.
        fn last_of_each<T>(v: &[T], id: impl Fn(&T) -> &str) -> Vec<bool> {
            let mut seen = std::collections::HashSet::new();
            let mut keep: Vec<bool> = v.iter().rev().map(|x| seen.insert(id_key(id(x)))).collect();
            keep.reverse();
            keep
        }
        fn retain<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut it = keep.iter();
            v.retain(|_| *it.next().unwrap_or(&true));
        }
        fn dedup<T>(v: &mut Vec<T>, id: impl Fn(&T) -> &str) {
            let keep = last_of_each(v, id);
            retain(v, &keep);
        }
        // NSGs and their JSON must stay aligned.
        let keep = last_of_each(&self.network_security_groups, |x| &x.id);
        retain(&mut self.network_security_groups, &keep);
        retain(&mut self.network_security_group_json, &keep);
        dedup(&mut self.virtual_networks, |x| &x.id);
        dedup(&mut self.network_interfaces, |x| &x.id);
        dedup(&mut self.application_security_groups, |x| &x.id);
        dedup(&mut self.route_tables, |x| &x.id);
        dedup(&mut self.virtual_network_gateways, |x| &x.id);
        dedup(&mut self.local_network_gateways, |x| &x.id);
        dedup(&mut self.connections, |x| &x.id);
        dedup(&mut self.virtual_machines, |x| &x.id);

        let mut index = HashMap::new();
        let mut add = |id: &str, k: ResourceKind, i: usize| {
            index.insert(id_key(id), (k, i));
        };
        for (i, x) in self.network_security_groups.iter().enumerate() {
            add(&x.id, ResourceKind::NetworkSecurityGroup, i);
        }
        for (i, x) in self.virtual_networks.iter().enumerate() {
            add(&x.id, ResourceKind::VirtualNetwork, i);
        }
        for (i, x) in self.network_interfaces.iter().enumerate() {
            add(&x.id, ResourceKind::NetworkInterface, i);
        }
        for (i, x) in self.application_security_groups.iter().enumerate() {
            add(&x.id, ResourceKind::ApplicationSecurityGroup, i);
        }
        for (i, x) in self.route_tables.iter().enumerate() {
            add(&x.id, ResourceKind::RouteTable, i);
        }
        for (i, x) in self.virtual_network_gateways.iter().enumerate() {
            add(&x.id, ResourceKind::VirtualNetworkGateway, i);
        }
        for (i, x) in self.local_network_gateways.iter().enumerate() {
            add(&x.id, ResourceKind::LocalNetworkGateway, i);
        }
        for (i, x) in self.connections.iter().enumerate() {
            add(&x.id, ResourceKind::Connection, i);
        }
        for (i, x) in self.virtual_machines.iter().enumerate() {
            add(&x.id, ResourceKind::VirtualMachine, i);
        }
        self.index = index;
    }

    /// Loads a `ServiceTags_*.json` (or `.json.gz`) download.
    pub fn load_service_tags(&mut self, path: &Path) -> Result<(), LoadError> {
        self.service_tags = Some(service_tags::load(path)?);
        Ok(())
    }

    fn lookup(&self, id: &str, kind: ResourceKind) -> Option<usize> {
        match self.index.get(&id_key(id)) {
            Some((k, i)) if *k == kind => Some(*i),
            _ => None,
        }
    }

    /// An NSG by id.
    pub fn nsg(&self, id: &str) -> Option<&NetworkSecurityGroup> {
        self.lookup(id, ResourceKind::NetworkSecurityGroup)
            .map(|i| &self.network_security_groups[i])
    }

    /// An NSG's rules as ARM JSON, by NSG id.
    pub fn nsg_json(&self, id: &str) -> Option<&NsgJson> {
        self.lookup(id, ResourceKind::NetworkSecurityGroup)
            .map(|i| &self.network_security_group_json[i])
    }

    /// A VNet by id.
    pub fn vnet(&self, id: &str) -> Option<&VirtualNetwork> {
        self.lookup(id, ResourceKind::VirtualNetwork).map(|i| &self.virtual_networks[i])
    }

    /// A subnet and its VNet, by subnet id.
    pub fn subnet(&self, id: &str) -> Option<(&VirtualNetwork, &Subnet)> {
        let vnet = self.vnet(parent_id(id))?;
        let key = id_key(id);
        vnet.subnets.iter().find(|s| id_key(&s.id) == key).map(|s| (vnet, s))
    }

    /// A NIC by id.
    pub fn nic(&self, id: &str) -> Option<&NetworkInterface> {
        self.lookup(id, ResourceKind::NetworkInterface).map(|i| &self.network_interfaces[i])
    }

    /// A route table by id.
    pub fn route_table(&self, id: &str) -> Option<&RouteTable> {
        self.lookup(id, ResourceKind::RouteTable).map(|i| &self.route_tables[i])
    }

    /// A virtual network gateway by id.
    pub fn virtual_network_gateway(&self, id: &str) -> Option<&VirtualNetworkGateway> {
        self.lookup(id, ResourceKind::VirtualNetworkGateway)
            .map(|i| &self.virtual_network_gateways[i])
    }

    /// A local network gateway by id.
    pub fn local_network_gateway(&self, id: &str) -> Option<&LocalNetworkGateway> {
        self.lookup(id, ResourceKind::LocalNetworkGateway)
            .map(|i| &self.local_network_gateways[i])
    }

    /// A VM by id.
    pub fn vm(&self, id: &str) -> Option<&VirtualMachine> {
        self.lookup(id, ResourceKind::VirtualMachine).map(|i| &self.virtual_machines[i])
    }

    /// Finds a resource of one kind by id or (unique, case-insensitive) name.
    pub fn find<'a, T>(
        &'a self,
        items: &'a [T],
        what: &str,
        id: impl Fn(&T) -> &str,
        name: impl Fn(&T) -> &str,
        key: &str,
    ) -> Result<&'a T, String> {
        let k = id_key(key);
        if let Some(x) = items.iter().find(|x| id_key(id(x)) == k) {
            return Ok(x);
        }
        let by_name: Vec<&T> = items.iter().filter(|x| name(x).eq_ignore_ascii_case(key.trim())).collect();
        match by_name.len() {
            1 => Ok(by_name[0]),
            0 => {
                let mut known: Vec<&str> = items.iter().map(&name).collect();
                known.sort_unstable();
                known.truncate(20);
                Err(if known.is_empty() {
                    format!(
                        "no {what} {}: the loaded resources contain none (pass them with --resources)",
                        quoted(key)
                    )
                } else {
                    format!("no {what} {} among the loaded resources (known: {})", quoted(key), known.join(", "))
                })
            }
            _ => Err(format!(
                "{what} name {} is ambiguous: {}; give the full resource id",
                quoted(key),
                by_name.iter().map(|x| id(x)).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}
