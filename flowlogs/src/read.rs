//! Flow-log reader: NSG flow logs v1/v2 (spec §7.1) and VNet flow logs v4
//! (spec §7.3), as a blob document `{"records":[...]}` or one record per
//! line (NDJSON, as Event Hub delivers them).
//!
//! Records are typed and their tuples parsed; errors name the file, the
//! record (0-based) and the field path inside the record.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::ReadError;
use crate::nsg::{NSG_CATEGORY, NSG_OPERATION};
use crate::time::parse_rfc3339;
use crate::tuple::{NsgFlowTuple, VnetFlowTuple};
use crate::vnet::VNET_CATEGORY;

/// How the file held its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileLayout {
    /// `{"records":[...]}`
    Document,
    /// One record object per line.
    Lines,
}

/// A parsed flow-log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogFile {
    pub path: PathBuf,
    pub layout: FileLayout,
    pub records: Vec<FlowLogRecord>,
}

impl FlowLogFile {
    /// Tuples over all records.
    pub fn tuple_count(&self) -> usize {
        self.records.iter().map(FlowLogRecord::tuple_count).sum()
    }
}

/// One record of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowLogRecord {
    Nsg(NsgRecord),
    Vnet(VnetRecord),
}

impl FlowLogRecord {
    pub fn tuple_count(&self) -> usize {
        match self {
            FlowLogRecord::Nsg(r) => r.tuples().count(),
            FlowLogRecord::Vnet(r) => r.tuples().count(),
        }
    }
}

/// An NSG flow-log record (spec §7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsgRecord {
    /// `time` as written.
    pub time: String,
    /// `time` in nanoseconds since the epoch.
    pub time_ns: i64,
    pub system_id: String,
    /// `macAddress`: in real blob files, absent from some samples.
    pub mac_address: Option<String>,
    pub category: String,
    pub resource_id: String,
    pub operation_name: String,
    /// `properties.Version`: 1 or 2.
    pub version: u32,
    pub rules: Vec<NsgRuleFlows>,
}

impl NsgRecord {
    /// Every tuple with its rule and MAC.
    pub fn tuples(&self) -> impl Iterator<Item = (&str, &str, &NsgFlowTuple)> + '_ {
        self.rules.iter().flat_map(|r| {
            r.flows
                .iter()
                .flat_map(move |m| m.tuples.iter().map(move |t| (r.rule.as_str(), m.mac.as_str(), t)))
        })
    }
}

/// `properties.flows[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsgRuleFlows {
    pub rule: String,
    pub flows: Vec<NsgMacFlows>,
}

/// `properties.flows[i].flows[j]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsgMacFlows {
    pub mac: String,
    pub tuples: Vec<NsgFlowTuple>,
}

/// A VNet flow-log record (spec §7.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnetRecord {
    pub time: String,
    pub time_ns: i64,
    pub flow_log_version: u32,
    pub flow_log_guid: String,
    pub mac_address: String,
    pub category: String,
    pub flow_log_resource_id: String,
    pub target_resource_id: String,
    pub operation_name: String,
    pub acls: Vec<VnetAclFlows>,
}

impl VnetRecord {
    /// Every tuple with its ACL ID and rule.
    pub fn tuples(&self) -> impl Iterator<Item = (&str, &str, &VnetFlowTuple)> + '_ {
        self.acls.iter().flat_map(|a| {
            a.groups
                .iter()
                .flat_map(move |g| g.tuples.iter().map(move |t| (a.acl_id.as_str(), g.rule.as_str(), t)))
        })
    }
}

/// `flowRecords.flows[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnetAclFlows {
    pub acl_id: String,
    pub groups: Vec<VnetFlowGroup>,
}

/// `flowRecords.flows[i].flowGroups[j]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnetFlowGroup {
    pub rule: String,
    pub tuples: Vec<VnetFlowTuple>,
}

/// Reads and parses the flow-log file at `path`.
pub fn read_file(path: impl AsRef<Path>) -> Result<FlowLogFile, ReadError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

/// Parses flow-log text; `path` is used in errors.
pub fn parse_str(text: &str, path: &Path) -> Result<FlowLogFile, ReadError> {
    let file = path.to_path_buf();
    let mut values = Vec::new();
    for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        values.push(v.map_err(|error| ReadError::Json { file: file.clone(), error })?);
    }
    // `{"records":[...]}` (a blob), or several of them one after the other
    // (an Event Hub capture: one document per batch); else records, one
    // per line.
    let is_document = |v: &Value| matches!(v, Value::Object(o) if o.contains_key("records"));
    let (layout, raw): (FileLayout, Vec<Value>) = if !values.is_empty() && values.iter().all(is_document) {
        let mut raw = Vec::new();
        for (d, v) in values.into_iter().enumerate() {
            let records = match v {
                Value::Object(mut o) => o.remove("records"),
                _ => None,
            };
            match records {
                Some(Value::Array(a)) => raw.extend(a),
                _ => {
                    return Err(ReadError::Document {
                        file,
                        message: format!("document {d}: `records` is not an array"),
                    })
                }
            }
        }
        (FileLayout::Document, raw)
    } else {
        (FileLayout::Lines, values)
    };
    if raw.is_empty() && layout == FileLayout::Lines {
        return Err(ReadError::Document {
            file,
            message: "no records".to_string(),
        });
    }
    let mut records = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let cx = Cx { file: &file, record: i };
        records.push(parse_record(&cx, v)?);
    }
    Ok(FlowLogFile {
        path: file,
        layout,
        records,
    })
}

/// Error context: file and record.
struct Cx<'a> {
    file: &'a Path,
    record: usize,
}

impl Cx<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> ReadError {
        ReadError::Field {
            file: self.file.to_path_buf(),
            record: self.record,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn obj<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Map<String, Value>, ReadError> {
        v.as_object()
            .ok_or_else(|| self.err(field, format!("expected an object, found {}", kind(v))))
    }

    fn get<'v>(&self, o: &'v Map<String, Value>, prefix: &str, key: &str) -> Result<&'v Value, ReadError> {
        o.get(key).ok_or_else(|| self.err(&join(prefix, key), "missing"))
    }

    fn str<'v>(&self, o: &'v Map<String, Value>, prefix: &str, key: &str) -> Result<&'v str, ReadError> {
        let v = self.get(o, prefix, key)?;
        v.as_str()
            .ok_or_else(|| self.err(&join(prefix, key), format!("expected a string, found {}", kind(v))))
    }

    fn uint(&self, o: &Map<String, Value>, prefix: &str, key: &str) -> Result<u32, ReadError> {
        let v = self.get(o, prefix, key)?;
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.err(&join(prefix, key), format!("expected a small non-negative integer, found {v}")))
    }

    fn arr<'v>(&self, o: &'v Map<String, Value>, prefix: &str, key: &str) -> Result<&'v [Value], ReadError> {
        let v = self.get(o, prefix, key)?;
        v.as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| self.err(&join(prefix, key), format!("expected an array, found {}", kind(v))))
    }

    fn time(&self, o: &Map<String, Value>) -> Result<(String, i64), ReadError> {
        let s = self.str(o, "", "time")?;
        let ns = parse_rfc3339(s).ok_or_else(|| self.err("time", format!("{s:?} is not an RFC 3339 UTC time")))?;
        Ok((s.to_string(), ns))
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_record(cx: &Cx<'_>, v: &Value) -> Result<FlowLogRecord, ReadError> {
    let o = cx.obj(v, "")?;
    let category = cx.str(o, "", "category")?;
    if category == NSG_CATEGORY {
        parse_nsg(cx, o).map(FlowLogRecord::Nsg)
    } else if category == VNET_CATEGORY {
        parse_vnet(cx, o).map(FlowLogRecord::Vnet)
    } else {
        Err(cx.err(
            "category",
            format!("{category:?} is neither {NSG_CATEGORY:?} nor {VNET_CATEGORY:?}"),
        ))
    }
}

fn parse_nsg(cx: &Cx<'_>, o: &Map<String, Value>) -> Result<NsgRecord, ReadError> {
    let (time, time_ns) = cx.time(o)?;
    let operation_name = cx.str(o, "", "operationName")?;
    if operation_name != NSG_OPERATION {
        return Err(cx.err("operationName", format!("{operation_name:?}, expected {NSG_OPERATION:?}")));
    }
    let mac_address = match o.get("macAddress") {
        None => None,
        Some(_) => Some(cx.str(o, "", "macAddress")?.to_string()),
    };
    let props = cx.obj(cx.get(o, "", "properties")?, "properties")?;
    let version = cx.uint(props, "properties", "Version")?;
    if version != 1 && version != 2 {
        return Err(cx.err("properties.Version", format!("{version}, expected 1 or 2")));
    }
    let mut rules = Vec::new();
    for (i, rv) in cx.arr(props, "properties", "flows")?.iter().enumerate() {
        let rp = format!("properties.flows[{i}]");
        let ro = cx.obj(rv, &rp)?;
        let mut flows = Vec::new();
        for (j, mv) in cx.arr(ro, &rp, "flows")?.iter().enumerate() {
            let mp = format!("{rp}.flows[{j}]");
            let mo = cx.obj(mv, &mp)?;
            let mut tuples = Vec::new();
            for (k, tv) in cx.arr(mo, &mp, "flowTuples")?.iter().enumerate() {
                let tp = format!("{mp}.flowTuples[{k}]");
                let s = tv
                    .as_str()
                    .ok_or_else(|| cx.err(&tp, format!("expected a string, found {}", kind(tv))))?;
                let t: NsgFlowTuple = s.parse().map_err(|e| cx.err(&tp, format!("{s:?}: {e}")))?;
                if t.state.is_some() != (version == 2) {
                    return Err(cx.err(
                        &tp,
                        format!(
                            "{s:?}: a version {version} record needs {} fields",
                            if version == 2 { 13 } else { 8 }
                        ),
                    ));
                }
                tuples.push(t);
            }
            flows.push(NsgMacFlows {
                mac: cx.str(mo, &mp, "mac")?.to_string(),
                tuples,
            });
        }
        rules.push(NsgRuleFlows {
            rule: cx.str(ro, &rp, "rule")?.to_string(),
            flows,
        });
    }
    Ok(NsgRecord {
        time,
        time_ns,
        system_id: cx.str(o, "", "systemId")?.to_string(),
        mac_address,
        category: NSG_CATEGORY.to_string(),
        resource_id: cx.str(o, "", "resourceId")?.to_string(),
        operation_name: operation_name.to_string(),
        version,
        rules,
    })
}

fn parse_vnet(cx: &Cx<'_>, o: &Map<String, Value>) -> Result<VnetRecord, ReadError> {
    let (time, time_ns) = cx.time(o)?;
    let operation_name = cx.str(o, "", "operationName")?;
    if operation_name != VNET_CATEGORY {
        return Err(cx.err("operationName", format!("{operation_name:?}, expected {VNET_CATEGORY:?}")));
    }
    let flow_log_version = cx.uint(o, "", "flowLogVersion")?;
    if flow_log_version != 4 {
        return Err(cx.err(
            "flowLogVersion",
            format!("{flow_log_version}, expected 4 (VNet flow logs are version 4)"),
        ));
    }
    let fr = cx.obj(cx.get(o, "", "flowRecords")?, "flowRecords")?;
    let mut acls = Vec::new();
    for (i, av) in cx.arr(fr, "flowRecords", "flows")?.iter().enumerate() {
        let ap = format!("flowRecords.flows[{i}]");
        let ao = cx.obj(av, &ap)?;
        let mut groups = Vec::new();
        for (j, gv) in cx.arr(ao, &ap, "flowGroups")?.iter().enumerate() {
            let gp = format!("{ap}.flowGroups[{j}]");
            let go = cx.obj(gv, &gp)?;
            let mut tuples = Vec::new();
            for (k, tv) in cx.arr(go, &gp, "flowTuples")?.iter().enumerate() {
                let tp = format!("{gp}.flowTuples[{k}]");
                let s = tv
                    .as_str()
                    .ok_or_else(|| cx.err(&tp, format!("expected a string, found {}", kind(tv))))?;
                tuples.push(s.parse::<VnetFlowTuple>().map_err(|e| cx.err(&tp, format!("{s:?}: {e}")))?);
            }
            groups.push(VnetFlowGroup {
                rule: cx.str(go, &gp, "rule")?.to_string(),
                tuples,
            });
        }
        acls.push(VnetAclFlows {
            acl_id: cx.str(ao, &ap, "aclID")?.to_string(),
            groups,
        });
    }
    Ok(VnetRecord {
        time,
        time_ns,
        flow_log_version,
        flow_log_guid: cx.str(o, "", "flowLogGUID")?.to_string(),
        mac_address: cx.str(o, "", "macAddress")?.to_string(),
        category: VNET_CATEGORY.to_string(),
        flow_log_resource_id: cx.str(o, "", "flowLogResourceID")?.to_string(),
        target_resource_id: cx.str(o, "", "targetResourceID")?.to_string(),
        operation_name: operation_name.to_string(),
        acls,
    })
}
