//! Loading the `ServiceTags_*.json` download (spec §2.2), plain or gzipped.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::json::{self, Document, Node};
use super::LoadError;
use netwatch_rules::{AddrSet, IpPrefix, ServiceTagTable};

/// Reads and parses a service tags file.
pub fn load(path: &Path) -> Result<ServiceTagTable, LoadError> {
    let raw = fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut s)
            .map_err(|source| LoadError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        s
    } else {
        String::from_utf8(raw).map_err(|e| LoadError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?
    };
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
    for c in values {
        let n = c.node();
        let name = n.req_str("name")?;
        let props = n
            .field("properties")
            .ok_or_else(|| n.field_error("properties", "missing required field"))?;
        let pn = props.node();
        let mut prefixes = Vec::new();
        for (s, at) in pn.str_array("addressPrefixes")? {
            let p = s.parse::<IpPrefix>().map_err(|_| at.error(format!("{s:?} is not a CIDR prefix")))?;
            prefixes.push(p);
        }
        table.insert(name, AddrSet::from_prefixes(prefixes));
    }
    table.set_origin(root.u64("changeNumber")?, root.str("cloud")?.map(str::to_string));
    let _ = json::kind;
    Ok(table)
}
