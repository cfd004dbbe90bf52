//! VNet flow log writer (spec §7.3), files in Azure's blob layout:
//!
//! `DIR/insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/<SUB>/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_<REGION>/FLOWLOGS/<NAME>/y=YYYY/m=MM/d=DD/h=HH/m=00/macAddress=<MAC>/PT1H.json`
//!
//! Records (one per flow log, MAC and minute of capture time), key order as
//! in the v4 sample:
//!
//! ```json
//! {"time":"…","flowLogVersion":4,"flowLogGUID":"…","macAddress":"00224871C205","category":"FlowLogFlowEvent",
//!  "flowLogResourceID":"/SUBSCRIPTIONS/…/FLOWLOGS/VNETFLOWLOG","targetResourceID":"/subscriptions/…/virtualNetworks/myVNet",
//!  "operationName":"FlowLogFlowEvent","flowRecords":{"flows":[{"aclID":"…","flowGroups":[{"rule":"…","flowTuples":["…"]}]}]}}
//! ```
//!
//! Tuples: `time_ms,src,dst,sport,dport,proto#,I|O,B|C|E|D,NX,pkts sent,bytes sent,pkts received,bytes received`.
//! Every IP protocol is logged (ports 0 for protocols without ports).
//! Allowed flows: `B` with `0,0,0,0`, `C`/`E` with deltas. Denied flows: one
//! `D` tuple with `0,0,0,0` at their begin; their `C`/`E` events are skipped
//! and counted. Encryption is always `NX` (netwatch has no encryption).

use std::path::{Path, PathBuf};

use netwatch_rules::Access;
use serde::Serialize;

use crate::error::FlowLogError;
use crate::event::{FlowLogEvent, FlowLogState};
use crate::ids::{derived_guid, upper_resource_id, IdError, MacAddress};
use crate::store::{hour_file, push_id, BucketKey, MinuteBuckets, RecordShape, Written};
use crate::time::{format_rfc3339_7, NS_PER_HOUR, NS_PER_MIN, NS_PER_MS};
use crate::tuple::{Encryption, TupleCounters, VnetFlowState, VnetFlowTuple};

/// Container directory of VNet flow logs.
pub const VNET_CONTAINER: &str = "insights-logs-flowlogflowevent";
/// `category` and `operationName` of every record.
pub const VNET_CATEGORY: &str = "FlowLogFlowEvent";
/// `flowLogVersion` written.
pub const VNET_FLOW_LOG_VERSION: u32 = 4;

/// A record's tuples by ACL, then rule; one record per flow log, MAC and
/// minute (and GUID, target and version).
const VNET_SHAPE: RecordShape = RecordShape {
    identity: &[
        &["flowLogVersion"],
        &["flowLogGUID"],
        &["macAddress"],
        &["category"],
        &["flowLogResourceID"],
        &["targetResourceID"],
        &["operationName"],
    ],
    list: &["flowRecords", "flows"],
    levels: &[("aclID", "flowGroups"), ("rule", "flowTuples")],
};

/// The flow log resource records belong to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VnetLogTarget {
    flow_log_resource_id: String,
    target_resource_id: String,
    flow_log_guid: String,
}

impl VnetLogTarget {
    /// From the flow log's ARM ID
    /// (`/subscriptions/…/resourceGroups/…/providers/Microsoft.Network/networkWatchers/…/flowLogs/…`,
    /// validated and upper-cased), its target (VNet, subnet or NIC ID,
    /// written as given) and its GUID; without one, `flowLogGUID` is derived
    /// stably from the ID.
    pub fn new(flow_log_id: &str, target_resource_id: &str, flow_log_guid: Option<&str>) -> Result<Self, IdError> {
        let flow_log_resource_id = upper_resource_id(flow_log_id, "Microsoft.Network", &["networkWatchers", "flowLogs"])?;
        let flow_log_guid = match flow_log_guid {
            Some(g) if !g.trim().is_empty() => g.trim().to_string(),
            _ => derived_guid(flow_log_id),
        };
        Ok(VnetLogTarget {
            flow_log_resource_id,
            target_resource_id: target_resource_id.to_string(),
            flow_log_guid,
        })
    }

    /// The ID of flow log `name` in the default Network Watcher of
    /// `region` (`NetworkWatcherRG/NetworkWatcher_<region>`, spec §13.2).
    pub fn default_flow_log_id(subscription: &str, region: &str, name: &str) -> String {
        format!(
            "/subscriptions/{subscription}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_{region}/flowLogs/{name}"
        )
    }

    /// Upper-cased `flowLogResourceID`.
    pub fn flow_log_resource_id(&self) -> &str {
        &self.flow_log_resource_id
    }

    pub fn target_resource_id(&self) -> &str {
        &self.target_resource_id
    }

    pub fn flow_log_guid(&self) -> &str {
        &self.flow_log_guid
    }
}

/// Counts of what a [`VnetFlowLogWriter`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetWriterStats {
    pub tuples: u64,
    pub records_written: u64,
    pub file_writes: u64,
    /// `C`/`E` events of denied flows (a denied flow is one `D` tuple).
    pub skipped_denied: u64,
}

/// Rules in order of first tuple, each with its tuples.
type RuleGroups = Vec<(String, Vec<String>)>;

#[derive(Debug)]
struct PendingRecord {
    time_ns: i64,
    flow_log_guid: String,
    target_resource_id: String,
    /// ACLs in order of first tuple → rules in order of first tuple → tuples.
    acls: Vec<(String, RuleGroups)>,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    time: String,
    #[serde(rename = "flowLogVersion")]
    flow_log_version: u32,
    #[serde(rename = "flowLogGUID")]
    flow_log_guid: &'a str,
    #[serde(rename = "macAddress")]
    mac_address: &'a str,
    category: &'static str,
    #[serde(rename = "flowLogResourceID")]
    flow_log_resource_id: &'a str,
    #[serde(rename = "targetResourceID")]
    target_resource_id: &'a str,
    #[serde(rename = "operationName")]
    operation_name: &'static str,
    #[serde(rename = "flowRecords")]
    flow_records: FlowRecordsOut<'a>,
}

#[derive(Serialize)]
struct FlowRecordsOut<'a> {
    flows: Vec<AclOut<'a>>,
}

#[derive(Serialize)]
struct AclOut<'a> {
    #[serde(rename = "aclID")]
    acl_id: &'a str,
    #[serde(rename = "flowGroups")]
    flow_groups: Vec<GroupOut<'a>>,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    rule: &'a str,
    #[serde(rename = "flowTuples")]
    flow_tuples: &'a [String],
}

/// Buffers VNet flow-log tuples into per-minute records and writes them to
/// hourly files.
#[derive(Debug)]
pub struct VnetFlowLogWriter {
    root: PathBuf,
    pending: MinuteBuckets<PendingRecord>,
    stats: VnetWriterStats,
}

impl VnetFlowLogWriter {
    /// A writer under `dir` (the storage account root).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        VnetFlowLogWriter {
            root: dir.into(),
            pending: MinuteBuckets::new(),
            stats: VnetWriterStats::default(),
        }
    }

    pub fn stats(&self) -> VnetWriterStats {
        self.stats
    }

    /// The hour file of `target`/`mac` holding records logged at `time_ns`.
    pub fn file_path(&self, target: &VnetLogTarget, mac: MacAddress, time_ns: i64) -> PathBuf {
        file_path(&self.root, &target.flow_log_resource_id, mac, time_ns)
    }

    /// The VNet tuple of `ev`; `None` for `C`/`E` events of denied flows.
    pub fn tuple_for(ev: &FlowLogEvent) -> Option<VnetFlowTuple> {
        let (state, counters) = match (ev.access, ev.state) {
            (Access::Deny, FlowLogState::Begin) => (VnetFlowState::Denied, TupleCounters::default()),
            (Access::Deny, _) => return None,
            (Access::Allow, FlowLogState::Begin) => (VnetFlowState::Begin, TupleCounters::default()),
            (Access::Allow, FlowLogState::Continuing) => (VnetFlowState::Continuing, ev.counters),
            (Access::Allow, FlowLogState::End) => (VnetFlowState::End, ev.counters),
        };
        Some(VnetFlowTuple {
            time_ms: ev.time_ns.div_euclid(NS_PER_MS),
            src: ev.tuple.src,
            dst: ev.tuple.dst,
            src_port: ev.tuple.src_port,
            dst_port: ev.tuple.dst_port,
            protocol: ev.tuple.protocol,
            direction: ev.direction,
            state,
            encryption: Encryption::NotEncrypted,
            counters: Some(counters),
        })
    }

    /// Buffers the tuple of `ev` under `acl_id` (the deciding NSG's GUID)
    /// and `rule` (see [`crate::event::vnet_rule_name`]). Returns whether a
    /// tuple was added.
    pub fn record(&mut self, target: &VnetLogTarget, mac: MacAddress, acl_id: &str, rule: &str, ev: &FlowLogEvent) -> bool {
        let Some(tuple) = Self::tuple_for(ev) else {
            self.stats.skipped_denied += 1;
            return false;
        };
        let key = BucketKey {
            resource_id: target.flow_log_resource_id.clone(),
            mac,
            minute: ev.logged_ns.div_euclid(NS_PER_MIN),
        };
        let rec = self.pending.entry(key, || PendingRecord {
            time_ns: ev.logged_ns,
            flow_log_guid: target.flow_log_guid.clone(),
            target_resource_id: target.target_resource_id.clone(),
            acls: Vec::new(),
        });
        rec.time_ns = rec.time_ns.max(ev.logged_ns);
        let text = tuple.to_string();
        let groups = match rec.acls.iter_mut().position(|(a, _)| a == acl_id) {
            Some(i) => &mut rec.acls[i].1,
            None => {
                rec.acls.push((acl_id.to_string(), Vec::new()));
                let last = rec.acls.len() - 1;
                &mut rec.acls[last].1
            }
        };
        match groups.iter_mut().find(|(r, _)| r == rule) {
            Some((_, tuples)) => crate::tuple::insert_by_time(tuples, text),
            None => groups.push((rule.to_string(), vec![text])),
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
        let result = self.pending.write_out(
            before_ns,
            &mut written,
            |key| file_path(root, &key.resource_id, key.mac, key.minute * NS_PER_MIN),
            &VNET_SHAPE,
            serialize,
        );
        self.stats.file_writes += written.files;
        self.stats.records_written += written.records;
        result
    }
}

fn serialize(members: &[(BucketKey, PendingRecord)]) -> Result<Vec<String>, FlowLogError> {
    let mut texts = Vec::with_capacity(members.len());
    for (key, rec) in members {
        let mac = key.mac.to_string();
        let flows = rec
            .acls
            .iter()
            .map(|(acl_id, groups)| AclOut {
                acl_id,
                flow_groups: groups.iter().map(|(rule, tuples)| GroupOut { rule, flow_tuples: tuples }).collect(),
            })
            .collect();
        let out = RecordOut {
            time: format_rfc3339_7(rec.time_ns),
            flow_log_version: VNET_FLOW_LOG_VERSION,
            flow_log_guid: &rec.flow_log_guid,
            mac_address: &mac,
            category: VNET_CATEGORY,
            flow_log_resource_id: &key.resource_id,
            target_resource_id: &rec.target_resource_id,
            operation_name: VNET_CATEGORY,
            flow_records: FlowRecordsOut { flows },
        };
        texts.push(serde_json::to_string(&out)?);
    }
    Ok(texts)
}

fn file_path(root: &Path, upper_id: &str, mac: MacAddress, time_ns: i64) -> PathBuf {
    let base = push_id(root.join(VNET_CONTAINER).join("flowLogResourceID="), upper_id);
    hour_file(&base, time_ns.div_euclid(NS_PER_HOUR) * NS_PER_HOUR, &mac.to_string())
}
