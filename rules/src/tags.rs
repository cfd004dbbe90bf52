//! The special address tags whose contents Azure fixes (spec §1.5 and the
//! "Decisions" list): `Internet` and `AzureLoadBalancer`, and the table of
//! downloaded service tags.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::addr::{AddrSet, IpPrefix};

/// The Azure host's virtual IP, source of health probes and part of
/// `VirtualNetwork` (spec §1.5).
pub const AZURE_HOST_IP: &str = "168.63.129.16/32";

/// IPv4 space that is not globally reachable unicast: the IANA IPv4
/// Special-Purpose Address Registry entries with "Globally Reachable" false
/// (RFC 6890 and updates), plus multicast and limited broadcast.
const NOT_INTERNET_V4: &[&str] = &[
    "0.0.0.0/8",       // RFC 791 "this network"
    "10.0.0.0/8",      // RFC 1918
    "100.64.0.0/10",   // RFC 6598 shared address space
    "127.0.0.0/8",     // RFC 1122 loopback
    "169.254.0.0/16",  // RFC 3927 link local
    "172.16.0.0/12",   // RFC 1918
    "192.0.0.0/24",    // RFC 6890 IETF protocol assignments
    "192.0.2.0/24",    // RFC 5737 TEST-NET-1
    "192.88.99.0/24",  // RFC 7526 deprecated 6to4 relay anycast
    "192.168.0.0/16",  // RFC 1918
    "198.18.0.0/15",   // RFC 2544 benchmarking
    "198.51.100.0/24", // RFC 5737 TEST-NET-2
    "203.0.113.0/24",  // RFC 5737 TEST-NET-3
    "224.0.0.0/4",     // RFC 5771 multicast (not unicast)
    "240.0.0.0/4",     // RFC 1112 reserved, includes 255.255.255.255
];

/// Globally reachable exceptions inside the blocks above (IANA registry).
const INTERNET_EXCEPTIONS_V4: &[&str] = &["192.0.0.9/32", "192.0.0.10/32"];

/// IPv6 global unicast (RFC 4291 §2.4) and the well-known NAT64 prefix.
const INTERNET_V6: &[&str] = &["2000::/3", "64:ff9b::/96"];

/// Blocks of 2000::/3 that the IANA IPv6 Special-Purpose Address Registry
/// marks not globally reachable.
const NOT_INTERNET_V6: &[&str] = &[
    "2001::/23",     // RFC 2928 IETF protocol assignments
    "2001:db8::/32", // RFC 3849 documentation
    "2002::/16",     // RFC 3056 6to4
    "3fff::/20",     // RFC 9637 documentation
];

/// Globally reachable exceptions inside 2001::/23 (IANA registry).
const INTERNET_EXCEPTIONS_V6: &[&str] = &[
    "2001:1::1/128",
    "2001:1::2/128",
    "2001:1::3/128",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:20::/28",
    "2001:30::/28",
];

fn set(list: &[&str]) -> AddrSet {
    AddrSet::from_prefixes(list.iter().filter_map(|s| s.parse::<IpPrefix>().ok()))
}

/// The `Internet` tag: globally reachable unicast space, IPv4 and IPv6.
pub fn internet() -> &'static AddrSet {
    static INTERNET: OnceLock<AddrSet> = OnceLock::new();
    INTERNET.get_or_init(|| {
        let v4 = AddrSet::all_v4()
            .difference(&set(NOT_INTERNET_V4))
            .union(&set(INTERNET_EXCEPTIONS_V4));
        let v6 = set(INTERNET_V6)
            .difference(&set(NOT_INTERNET_V6))
            .union(&set(INTERNET_EXCEPTIONS_V6));
        v4.union(&v6)
    })
}

/// The `AzureLoadBalancer` tag: `168.63.129.16/32` (spec Decisions 3).
pub fn azure_load_balancer() -> &'static AddrSet {
    static ALB: OnceLock<AddrSet> = OnceLock::new();
    ALB.get_or_init(|| set(&[AZURE_HOST_IP]))
}

/// Service tags from a `ServiceTags_*.json` download, looked up
/// case-insensitively (spec Decisions 4). Regional tags such as
/// `Storage.WestUS` are ordinary entries.
#[derive(Clone, Debug, Default)]
pub struct ServiceTagTable {
    tags: HashMap<String, (String, AddrSet)>,
    /// The prefixes of the tags loaded with [`Self::insert_listed`], in
    /// the file's order, by lower-case tag name.
    listed: HashMap<String, Vec<IpPrefix>>,
    /// `properties.region` of the regional tags, lower case, by lower-case
    /// tag name.
    regions: HashMap<String, String>,
    change_number: Option<u64>,
    cloud: Option<String>,
}

impl ServiceTagTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a tag.
    pub fn insert(&mut self, name: &str, prefixes: AddrSet) {
        self.listed.remove(&name.to_ascii_lowercase());
        self.tags.insert(name.to_ascii_lowercase(), (name.to_string(), prefixes));
    }

    /// Adds (or replaces) a tag with its prefixes as the file lists them:
    /// [`Self::listed`] gives them back in this order, as written (the set
    /// [`Self::get`] gives merges adjacent ones and sorts them).
    pub fn insert_listed(&mut self, name: &str, prefixes: Vec<IpPrefix>) {
        self.insert(name, AddrSet::from_prefixes(prefixes.iter().copied()));
        self.listed.insert(name.to_ascii_lowercase(), prefixes);
    }

    /// A tag's prefixes, by any casing of its name, as the file lists them
    /// (for a tag added with [`Self::insert`], its set's prefixes in
    /// address order).
    pub fn listed(&self, name: &str) -> Option<Vec<IpPrefix>> {
        let key = name.to_ascii_lowercase();
        match self.listed.get(&key) {
            Some(list) => Some(list.clone()),
            None => self.tags.get(&key).map(|(_, s)| s.to_prefixes()),
        }
    }

    /// Records a tag's `properties.region`. The file does not always spell
    /// a region as the tag name does (`AppService.FranceCentral` has region
    /// `centralfrance`), so [`Self::regional`] looks at both.
    pub fn set_region(&mut self, name: &str, region: &str) {
        if !region.is_empty() {
            self.regions.insert(name.to_ascii_lowercase(), region.to_ascii_lowercase());
        }
    }

    /// The regional tag of `service` (e.g. `Storage`) for `region` (a
    /// location such as `westeurope`), for service endpoint routes (spec
    /// §5.2): the tag named `{service}.{region}`, else the `{service}.*`
    /// tags whose `properties.region` is `region` (all of them, if
    /// several), both without case.
    pub fn regional(&self, service: &str, region: &str) -> Option<AddrSet> {
        self.regional_tags(service, region)
            .into_iter()
            .filter_map(|n| self.get(n))
            .fold(None, |acc: Option<AddrSet>, s| Some(acc.map_or_else(|| s.clone(), |a| a.union(s))))
    }

    /// The names (as the file spells them) of the tags [`Self::regional`]
    /// takes: `{service}.{region}` if there is one, else the `{service}.*`
    /// tags whose `properties.region` is `region`, by lower-case name.
    /// Empty when there is none.
    pub fn regional_tags(&self, service: &str, region: &str) -> Vec<&str> {
        if let Some((name, _)) = self.tags.get(&format!("{service}.{region}").to_ascii_lowercase()) {
            return vec![name.as_str()];
        }
        let head = format!("{}.", service.to_ascii_lowercase());
        let region = region.to_ascii_lowercase();
        let mut names: Vec<&String> = self
            .regions
            .iter()
            .filter(|(name, r)| name.starts_with(&head) && **r == region)
            .map(|(name, _)| name)
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| self.tags.get(n).map(|(name, _)| name.as_str()))
            .collect()
    }

    /// Records the file's `changeNumber` and `cloud`.
    pub fn set_origin(&mut self, change_number: Option<u64>, cloud: Option<String>) {
        self.change_number = change_number;
        self.cloud = cloud;
    }

    /// The file's `changeNumber`, when loaded from a file.
    pub fn change_number(&self) -> Option<u64> {
        self.change_number
    }

    /// The file's `cloud`, when loaded from a file.
    pub fn cloud(&self) -> Option<&str> {
        self.cloud.as_deref()
    }

    /// A tag's prefixes, by any casing of its name.
    pub fn get(&self, name: &str) -> Option<&AddrSet> {
        self.tags.get(&name.to_ascii_lowercase()).map(|(_, s)| s)
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// True when no tag is loaded.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_tag_by_name_or_by_region() {
        let one = |p: &str| AddrSet::from_prefixes(p.parse::<IpPrefix>().ok());
        let mut t = ServiceTagTable::new();
        t.insert("Storage.WestEurope", one("10.1.0.0/16"));
        t.set_region("Storage.WestEurope", "westeurope");
        t.insert("AppService.FranceCentral", one("10.2.0.0/16"));
        t.set_region("AppService.FranceCentral", "centralfrance");
        t.insert("Sql.FranceCentral", one("10.3.0.0/16"));
        t.set_region("Sql.FranceCentral", "centralfrance");
        assert_eq!(t.regional("Storage", "WESTEUROPE"), Some(one("10.1.0.0/16")));
        // By name, and by the file's own spelling of the region.
        assert_eq!(t.regional("AppService", "francecentral"), Some(one("10.2.0.0/16")));
        assert_eq!(t.regional("AppService", "CentralFrance"), Some(one("10.2.0.0/16")));
        // Only the service's own tags.
        assert_eq!(t.regional("Storage", "centralfrance"), None);
        assert_eq!(t.regional("Storage", "northeurope"), None);
    }

    #[test]
    fn listed_prefixes_keep_the_files_order() {
        let p = |s: &str| s.parse::<IpPrefix>().unwrap();
        let mut t = ServiceTagTable::new();
        // Unsorted, and two halves of a /24 that the set merges.
        t.insert_listed("Storage", vec![p("20.60.0.0/16"), p("10.0.0.128/25"), p("10.0.0.0/25")]);
        let listed: Vec<String> = t.listed("STORAGE").unwrap().iter().map(|p| p.to_string()).collect();
        assert_eq!(listed, ["20.60.0.0/16", "10.0.0.128/25", "10.0.0.0/25"]);
        let set: Vec<String> = t.get("storage").unwrap().to_prefixes().iter().map(|p| p.to_string()).collect();
        assert_eq!(set, ["10.0.0.0/24", "20.60.0.0/16"]);
        // A tag added as a set lists the set's prefixes; replacing a listed
        // tag with a set forgets the list.
        t.insert("Sql", AddrSet::from_prefixes([p("10.9.0.0/16")]));
        assert_eq!(t.listed("sql"), Some(vec![p("10.9.0.0/16")]));
        t.insert("Storage", AddrSet::from_prefixes([p("10.8.0.0/16")]));
        assert_eq!(t.listed("Storage"), Some(vec![p("10.8.0.0/16")]));
        assert_eq!(t.listed("nope"), None);
        t.set_region("Storage", "westeurope");
        assert_eq!(t.regional_tags("Sql", "westeurope"), Vec::<&str>::new());
    }

    #[test]
    fn internet_matches_observed_expansion() {
        let p: Vec<String> = internet().to_prefixes().iter().take(6).map(|p| p.to_string()).collect();
        // Spec §6.2: the expansion Azure returns begins this way.
        assert_eq!(p, ["1.0.0.0/8", "2.0.0.0/7", "4.0.0.0/6", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6"]);
        let i = internet();
        for a in [
            "10.1.2.3",
            "192.168.1.1",
            "172.20.0.1",
            "100.64.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "2001:db8::1",
            "fe80::1",
            "fd00::1",
        ] {
            assert!(!i.contains(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "20.38.107.36", "2603:1000::1", "2001:4860::8888", "192.0.0.9"] {
            assert!(i.contains(a.parse().unwrap()), "{a}");
        }
    }
}
