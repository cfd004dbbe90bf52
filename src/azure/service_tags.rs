//! Loading the `ServiceTags_*.json` download (spec §2.2), plain or gzipped.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::json::{self, Document, Node};
use super::LoadError;
use netwatch_rules::{quoted, IpPrefix, ServiceTagTable};

/// Reads and parses a service tags file.
pub fn load(path: &Path) -> Result<ServiceTagTable, LoadError> {
    if path.is_dir() {
        return Err(LoadError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("is a directory: --service-tags takes one ServiceTags_*.json file (plain or .gz)"),
        });
    }
    let raw = fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut b = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut b)
            .map_err(|source| LoadError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        b
    } else {
        raw
    };
    let text = super::json_text(path, bytes)?;
    parse_text(path, text)
}

/// Parses the text of a service tags file.
pub fn parse(path: &Path, text: &str) -> Result<ServiceTagTable, LoadError> {
    parse_text(path, text.to_string())
}

fn parse_text(path: &Path, text: String) -> Result<ServiceTagTable, LoadError> {
    let doc = Document::parse(path, text)?;
    let file: Arc<Path> = Arc::from(path);
    let root = Node::new(&doc, doc.root(), &file, "");
    let values = root.array("values")?;
    if values.is_empty() {
        return Err(root.field_error("values", "expected the service tags array of a ServiceTags_*.json download"));
    }
    let mut table = ServiceTagTable::new();
    // Tag names match without case in rules: two entries of one name would
    // make a rule's meaning depend on their order.
    let mut seen = std::collections::HashMap::new();
    for (i, c) in values.into_iter().enumerate() {
        let n = c.node();
        let name = n.req_str("name")?;
        if let Some(j) = seen.insert(name.to_ascii_lowercase(), i) {
            return Err(n.field_error(
                "name",
                format!("{} is already the name of values[{j}]; tag names are unique", quoted(name)),
            ));
        }
        let props = n
            .object("properties")?
            .ok_or_else(|| n.field_error("properties", "missing required field"))?;
        let pn = props.node();
        if !matches!(pn.field("addressPrefixes").map(|f| f.value), Some(json::Json::Array(_))) {
            return Err(pn.field_error("addressPrefixes", "expected the tag's array of prefixes"));
        }
        let mut prefixes = Vec::new();
        for (s, at) in pn.str_array("addressPrefixes")? {
            let p = s
                .parse::<IpPrefix>()
                .map_err(|e| at.error(format!("{} is not a CIDR prefix: {e}", quoted(s))))?;
            if let Some(net) = p.host_bits_network(s) {
                return Err(at.error(format!("{}: host bits are set; the prefix is {net}", quoted(s))));
            }
            prefixes.push(p);
        }
        table.insert_listed(name, prefixes);
        // Regional tags name their region (service endpoint routes, spec §5.2).
        if let Some(region) = pn.str("region")? {
            table.set_region(name, region);
        }
    }
    table.set_origin(root.u64("changeNumber")?, root.str("cloud")?.map(str::to_string));
    Ok(table)
}
