//! NSG flow log writer (spec §7.1), files in Azure's blob layout:
//!
//! `DIR/insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/<SUB>/RESOURCEGROUPS/<RG>/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/<NSG>/y=YYYY/m=MM/d=DD/h=HH/m=00/macAddress=<MAC>/PT1H.json`
//!
//! Each file is `{"records":[...]}`; a record covers one NSG, one MAC and
//! one minute of capture time (Azure collects at 1-minute intervals) and
//! groups its tuples by rule:
//!
//! ```json
//! {"time":"…","systemId":"<guid>","macAddress":"000D3AD53B86","category":"NetworkSecurityGroupFlowEvent",
//!  "resourceId":"/SUBSCRIPTIONS/…/NETWORKSECURITYGROUPS/<NSG>","operationName":"NetworkSecurityGroupFlowEvents",
//!  "properties":{"Version":2,"flows":[{"rule":"DefaultRule_DenyAllInBound","flows":[{"mac":"000D3AD53B86","flowTuples":["…"]}]}]}}
//! ```
//!
//! Rules of the format applied here:
//! - only TCP and UDP are logged (protocol letters `T`/`U`); events of
//!   other protocols are skipped and counted in [`NsgWriterStats::skipped_protocol`];
//! - v2: `B` with empty counters, `C`/`E` with deltas; denied flows only as
//!   `B` (denied `C`/`E` events are skipped and counted);
//! - v1 (8-field tuples, no state): one tuple per flow, at its begin;
//!   `C`/`E` events are skipped and counted;
//! - a record's `time` is the latest `logged_ns` of its events, with 7
//!   fractional digits; the hour file is the hour of the record's minute.

use std::path::{Path, PathBuf};

use netwatch_rules::Access;
use serde::Serialize;

use crate::error::FlowLogError;
use crate::event::{FlowLogEvent, FlowLogState};
use crate::ids::{derived_guid, upper_resource_id, IdError, MacAddress};
use crate::store::{hour_file, push_id, BucketKey, MinuteBuckets, RecordShape, Written};
use crate::time::{format_rfc3339_7, NS_PER_HOUR, NS_PER_MIN, NS_PER_SEC};
use crate::tuple::{NsgFlowState, NsgFlowTuple, NsgProtocol};

/// Container directory of NSG flow logs.
pub const NSG_CONTAINER: &str = "insights-logs-networksecuritygroupflowevent";
/// `category` of every record.
pub const NSG_CATEGORY: &str = "NetworkSecurityGroupFlowEvent";
/// `operationName` of every record.
pub const NSG_OPERATION: &str = "NetworkSecurityGroupFlowEvents";

/// A record's tuples by rule, then MAC; one record per NSG, MAC, minute
/// (and systemId and Version: another NSG's or version's record stays apart).
const NSG_SHAPE: RecordShape = RecordShape {
    identity: &[
        &["systemId"],
        &["macAddress"],
        &["category"],
        &["resourceId"],
        &["operationName"],
        &["properties", "Version"],
    ],
    list: &["properties", "flows"],
    levels: &[("rule", "flows"), ("mac", "flowTuples")],
};

/// NSG flow log format version (`properties.Version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NsgFlowLogVersion {
    V1,
    V2,
}

impl NsgFlowLogVersion {
    pub fn number(self) -> u8 {
        match self {
            NsgFlowLogVersion::V1 => 1,
            NsgFlowLogVersion::V2 => 2,
        }
    }
}

/// The NSG a flow log belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NsgLogTarget {
    resource_id: String,
    system_id: String,
}

impl NsgLogTarget {
    /// From the NSG's ARM ID (validated, upper-cased) and its
    /// `resourceGuid`; without one, `systemId` is derived stably from the ID
    /// ([`derived_guid`]).
    pub fn new(nsg_id: &str, resource_guid: Option<&str>) -> Result<Self, IdError> {
        let resource_id = upper_resource_id(nsg_id, "Microsoft.Network", &["networkSecurityGroups"])?;
        let system_id = match resource_guid {
            Some(g) if !g.trim().is_empty() => g.trim().to_string(),
            _ => derived_guid(nsg_id),
        };
        Ok(NsgLogTarget { resource_id, system_id })
    }

    /// Upper-cased NSG resource ID, as in `resourceId`.
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// `systemId`.
    pub fn system_id(&self) -> &str {
        &self.system_id
    }
}

/// Counts of what an [`NsgFlowLogWriter`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsgWriterStats {
    /// Tuples accepted.
    pub tuples: u64,
    /// Records written to files.
    pub records_written: u64,
    /// File writes (creations and appends).
    pub file_writes: u64,
    /// Events of protocols other than TCP/UDP (not in NSG flow logs).
    pub skipped_protocol: u64,
    /// `C`/`E` events of denied flows (denied flows appear only as `B`).
    pub skipped_denied: u64,
    /// `C`/`E` events in v1 (v1 tuples have no state).
    pub skipped_v1: u64,
}

#[derive(Debug)]
struct PendingRecord {
    time_ns: i64,
    system_id: String,
    /// Rules in order of first tuple, each with its tuples.
    rules: Vec<(String, Vec<String>)>,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    time: String,
    #[serde(rename = "systemId")]
    system_id: &'a str,
    #[serde(rename = "macAddress")]
    mac_address: &'a str,
    category: &'static str,
    #[serde(rename = "resourceId")]
    resource_id: &'a str,
    #[serde(rename = "operationName")]
    operation_name: &'static str,
    properties: PropertiesOut<'a>,
}

#[derive(Serialize)]
struct PropertiesOut<'a> {
    #[serde(rename = "Version")]
    version: u8,
    flows: Vec<RuleFlowsOut<'a>>,
}

#[derive(Serialize)]
struct RuleFlowsOut<'a> {
    rule: &'a str,
    flows: [MacFlowsOut<'a>; 1],
}

#[derive(Serialize)]
struct MacFlowsOut<'a> {
    mac: &'a str,
    #[serde(rename = "flowTuples")]
    flow_tuples: &'a [String],
}

/// Buffers NSG flow-log tuples into per-minute records and writes them to
/// hourly files.
#[derive(Debug)]
pub struct NsgFlowLogWriter {
    root: PathBuf,
    version: NsgFlowLogVersion,
    pending: MinuteBuckets<PendingRecord>,
    stats: NsgWriterStats,
}

impl NsgFlowLogWriter {
    /// A writer under `dir` (the storage account root).
    pub fn new(dir: impl Into<PathBuf>, version: NsgFlowLogVersion) -> Self {
        NsgFlowLogWriter {
            root: dir.into(),
            version,
            pending: MinuteBuckets::new(),
            stats: NsgWriterStats::default(),
        }
    }

    pub fn stats(&self) -> NsgWriterStats {
        self.stats
    }

    /// The hour file of `nsg`/`mac` holding records logged at `time_ns`.
    pub fn file_path(&self, nsg: &NsgLogTarget, mac: MacAddress, time_ns: i64) -> PathBuf {
        file_path(&self.root, &nsg.resource_id, mac, time_ns)
    }

    /// The NSG tuple of `ev` for this writer's version; `None` when the
    /// format does not log it (see the module docs).
    pub fn tuple_for(&self, ev: &FlowLogEvent) -> Option<NsgFlowTuple> {
        let protocol = NsgProtocol::from_number(ev.tuple.protocol)?;
        let (state, counters) = match (self.version, ev.state) {
            (NsgFlowLogVersion::V1, FlowLogState::Begin) => (None, None),
            (NsgFlowLogVersion::V1, _) => return None,
            (NsgFlowLogVersion::V2, FlowLogState::Begin) => (Some(NsgFlowState::Begin), None),
            (NsgFlowLogVersion::V2, _) if ev.access == Access::Deny => return None,
            (NsgFlowLogVersion::V2, FlowLogState::Continuing) => (Some(NsgFlowState::Continuing), Some(ev.counters)),
            (NsgFlowLogVersion::V2, FlowLogState::End) => (Some(NsgFlowState::End), Some(ev.counters)),
        };
        Some(NsgFlowTuple {
            time_s: ev.time_ns.div_euclid(NS_PER_SEC),
            src: ev.tuple.src,
            dst: ev.tuple.dst,
            src_port: ev.tuple.src_port,
            dst_port: ev.tuple.dst_port,
            protocol,
            direction: ev.direction,
            decision: ev.access,
            state,
            counters,
        })
    }

    /// Buffers the tuple of `ev` under `rule` (the flow-log rule name,
    /// e.g. [`netwatch_rules::SecurityRule::flow_log_name`]). Returns
    /// whether a tuple was added (false when the format skips the event).
    pub fn record(&mut self, nsg: &NsgLogTarget, mac: MacAddress, rule: &str, ev: &FlowLogEvent) -> bool {
        let Some(tuple) = self.tuple_for(ev) else {
            if NsgProtocol::from_number(ev.tuple.protocol).is_none() {
                self.stats.skipped_protocol += 1;
            } else if self.version == NsgFlowLogVersion::V1 {
                self.stats.skipped_v1 += 1;
            } else {
                self.stats.skipped_denied += 1;
            }
            return false;
        };
        let key = BucketKey {
            resource_id: nsg.resource_id.clone(),
            mac,
            minute: ev.logged_ns.div_euclid(NS_PER_MIN),
        };
        let rec = self.pending.entry(key, || PendingRecord {
            time_ns: ev.logged_ns,
            system_id: nsg.system_id.clone(),
            rules: Vec::new(),
        });
        rec.time_ns = rec.time_ns.max(ev.logged_ns);
        let text = tuple.to_string();
        match rec.rules.iter_mut().find(|(r, _)| r == rule) {
            Some((_, tuples)) => crate::tuple::insert_by_time(tuples, text),
            None => rec.rules.push((rule.to_string(), vec![text])),
        }
        self.stats.tuples += 1;
        true
    }

    /// Writes the records of minutes that ended before `now_ns`'s minute
    /// (call it with the flow table's clock to bound memory on long
    /// captures).
    pub fn flush_before(&mut self, now_ns: i64) -> Result<(), FlowLogError> {
        self.write(Some(now_ns))
    }

    /// Writes every buffered record.
    pub fn flush(&mut self) -> Result<(), FlowLogError> {
        self.write(None)
    }

    fn write(&mut self, before_ns: Option<i64>) -> Result<(), FlowLogError> {
        let mut written = Written::default();
        let root = &self.root;
        let version = self.version;
        let result = self.pending.write_out(
            before_ns,
            &mut written,
            |key| file_path(root, &key.resource_id, key.mac, key.minute * NS_PER_MIN),
            &NSG_SHAPE,
            |m| serialize(version, m),
        );
        self.stats.file_writes += written.files;
        self.stats.records_written += written.records;
        result
    }
}

/// The records of one hour file as JSON texts, in Azure's key order.
fn serialize(version: NsgFlowLogVersion, members: &[(BucketKey, PendingRecord)]) -> Result<Vec<String>, FlowLogError> {
    let mut texts = Vec::with_capacity(members.len());
    for (key, rec) in members {
        let mac = key.mac.to_string();
        let flows: Vec<RuleFlowsOut<'_>> = rec
            .rules
            .iter()
            .map(|(rule, tuples)| RuleFlowsOut {
                rule,
                flows: [MacFlowsOut {
                    mac: &mac,
                    flow_tuples: tuples,
                }],
            })
            .collect();
        let out = RecordOut {
            time: format_rfc3339_7(rec.time_ns),
            system_id: &rec.system_id,
            mac_address: &mac,
            category: NSG_CATEGORY,
            resource_id: &key.resource_id,
            operation_name: NSG_OPERATION,
            properties: PropertiesOut {
                version: version.number(),
                flows,
            },
        };
        texts.push(serde_json::to_string(&out)?);
    }
    Ok(texts)
}

fn file_path(root: &Path, upper_id: &str, mac: MacAddress, time_ns: i64) -> PathBuf {
    let base = push_id(root.join(NSG_CONTAINER).join("resourceId="), upper_id);
    hour_file(&base, time_ns.div_euclid(NS_PER_HOUR) * NS_PER_HOUR, &mac.to_string())
}
