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

use netwatch_rules::{NetworkSecurityGroup, ServiceTagTable};
use thiserror::Error;

use json::Json;
pub use json::Location;
pub use resources::*;

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
            env.load_file(&f, &mut subnets)?;
        }
        env.attach_subnets(subnets)?;
        env.reindex();
        Ok(env)
    }

    /// Loads one JSON document already in memory, as if read from `path`.
    pub fn load_str(&mut self, path: &Path, text: &str) -> Result<(), LoadError> {
        let mut subnets = Vec::new();
        self.load_text(path, text.to_string(), &mut subnets)?;
        self.attach_subnets(subnets)?;
        self.reindex();
        Ok(())
    }

    fn load_file(&mut self, path: &Path, subnets: &mut Vec<(Subnet, Location)>) -> Result<(), LoadError> {
        let text = fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_text(path, text, subnets)
    }

    fn load_text(&mut self, path: &Path, text: String, subnets: &mut Vec<(Subnet, Location)>) -> Result<(), LoadError> {
        let doc = Arc::new(json::Document::parse(path, text)?);
        self.files.push(path.to_path_buf());
        let file: Arc<Path> = Arc::from(path);
        let root = doc.root();
        // Accept a single resource, an array, or a `{"value": [...]}` list.
        // Each item comes with its position in the document.
        let (items, base): (Vec<(&Json, [usize; 2])>, &str) = match root {
            Json::Array(_) => (
                doc.elements(root).iter().enumerate().map(|(i, v)| (v, [i, usize::MAX])).collect(),
                "",
            ),
            Json::Object(_) if doc.get(root, "value").is_some_and(Json::is_array) && doc.get(root, "type").is_none() => {
                let o = doc.members(root);
                let at = o.iter().position(|(k, _)| doc.is(*k, "value")).unwrap_or_default();
                match o.get(at) {
                    Some((_, a)) => (doc.elements(a).iter().enumerate().map(|(i, v)| (v, [at, i])).collect(), "value"),
                    None => (Vec::new(), "value"),
                }
            }
            Json::Object(_) => (vec![(root, [usize::MAX; 2])], "-"),
            other => {
                return Err(LoadError::Invalid {
                    at: Location { file, path: String::new() },
                    message: format!(
                        "expected a resource object, an array of resources or {{\"value\": [...]}}, found {}",
                        json::kind(other)
                    ),
                })
            }
        };
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
            if ty.is_none() && node.field("network").is_some() && node.field("origin").is_some() {
                self.learned_routes.push(parse_learned_route(&node)?);
                continue;
            }
            let kind = match ty {
                Some(t) => ResourceKind::from_type(t),
                None => node.str("id")?.and_then(ResourceKind::from_id),
            };
            let Some(kind) = kind else {
                let t = ty.unwrap_or("(no type)").to_string();
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
                ResourceKind::VirtualNetwork => self.virtual_networks.push(parse_vnet(&node)?),
                ResourceKind::Subnet => {
                    let id = node.req_str("id")?;
                    subnets.push((parse_subnet(&node, parent_id(id))?, node.location()));
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
        Ok(())
    }

    /// Standalone subnets (`az network vnet subnet show`) join their VNet,
    /// replacing a nested copy with the same id.
    fn attach_subnets(&mut self, subnets: Vec<(Subnet, Location)>) -> Result<(), LoadError> {
        for (s, at) in subnets {
            let parent = id_key(parent_id(&s.id));
            let Some(v) = self.virtual_networks.iter_mut().find(|v| id_key(&v.id) == parent) else {
                return Err(LoadError::Invalid {
                    at,
                    message: format!(
                        "subnet {:?} belongs to virtual network {:?}, which is not among the loaded resources",
                        s.name,
                        parent_id(&s.id)
                    ),
                });
            };
            let key = id_key(&s.id);
            v.subnets.retain(|x| id_key(&x.id) != key);
            v.subnets.push(s);
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
                    format!("no {what} {key:?}: the loaded resources contain none (pass them with --resources)")
                } else {
                    format!("no {what} {key:?} among the loaded resources (known: {})", known.join(", "))
                })
            }
            _ => Err(format!(
                "{what} name {key:?} is ambiguous: {}; give the full resource id",
                by_name.iter().map(|x| id(x)).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}
