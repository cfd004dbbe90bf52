//! What `evaluate` (flows of capture files) and live capture with flow logs
//! share once flows carry NSG verdicts: the NIC's evaluator, built from the
//! environment; every flow record handed to the flow logs and the flow
//! export; and the flows, packets and bytes each rule decided.

use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netwatch_capture::live::TapPacket;
use netwatch_capture::{FragmentTracker, PacketMeta};
use netwatch_flowlogs::{ExportStats, FlowExporter, FlowRecord, FlowRecordKind, FlowTable, FlowTableConfig, NsgDecision};
use netwatch_rules::{Access, AddrSet, Direction};
use thiserror::Error;

use super::context::{find_nic, NicView};
use super::flow_logging::{FlowLogCounts, FlowLogger};
use super::replay::{nic_addresses, packet_info, NicEvaluator, Verdict};
use super::WatcherError;
use crate::azure::resources::{id_key, name_of};
use crate::Environment;

/// The NIC `nic` (name or resource id) and its compiled inbound and
/// outbound NSG chains. `local` replaces the NIC's own addresses as the
/// ones whose traffic is outbound (`--local`); `None` keeps them.
pub fn prepare_nic<'e>(env: &'e Environment, nic: &str, local: Option<AddrSet>) -> Result<(NicView<'e>, NicEvaluator<'e>), WatcherError> {
    let nic = find_nic(env, nic)?;
    let view = NicView::for_nic(env, nic, None)?;
    // Azure refuses IP configurations of one NIC in different subnets
    // ("IPConfigurations on a Nic cannot belong to different subnets",
    // Azure/azure-sdk-for-java#1865), so such input is hand-made; a replay
    // judges every flow with the primary configuration's subnet.
    for c in &nic.ip_configurations {
        if let (Some(sub), Some(ip)) = (c.subnet_id.as_deref(), c.private_ip_address) {
            if id_key(sub) != id_key(&view.subnet.id) {
                tracing::warn!(
                    "network interface {:?}: IP configuration {:?} ({ip}) is in subnet {:?}, not the primary's {:?} (Azure refuses IP \
                     configurations of one NIC in different subnets); its flows are judged with the primary configuration's subnet NSG and \
                     VirtualNetwork (ip-flow-verify --local {ip}:PORT judges them with its own)",
                    nic.name,
                    c.name,
                    name_of(sub),
                    view.subnet.name
                );
            }
        }
    }
    let stand_in_for = match &local {
        Some(_) => {
            let mut own: Vec<_> = nic.ip_configurations.iter().filter(|c| c.primary).collect();
            own.extend(nic.ip_configurations.iter().filter(|c| !c.primary));
            own.iter().filter_map(|c| c.private_ip_address).collect()
        }
        None => Vec::new(),
    };
    let evaluator = NicEvaluator {
        stand_in_for,
        local: local.unwrap_or_else(|| nic_addresses(nic)),
        inbound: view.compile(Direction::Inbound)?,
        outbound: view.compile(Direction::Outbound)?,
    };
    Ok((view, evaluator))
}

/// A verdict's NSG name and qualified rule name (`securityRules/...`),
/// shared by every record that prints them.
pub type VerdictNames = (Option<Arc<str>>, Option<Arc<str>>);

/// An output of [`VerdictRecords`] failed; it takes no more records.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("writing flow logs: {0}")]
    FlowLog(String),
    #[error("exporting flows to {target}: {source}")]
    Export { target: String, source: io::Error },
    #[error("flow table: {0}")]
    Table(String),
}

/// The flows, packets and bytes one verdict covers: a rule of an NSG, the
/// absence of an NSG, or transit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTotals {
    /// `Inbound`, `Outbound` or `Transit`.
    pub direction: &'static str,
    /// `Allow` or `Deny`; empty for transit.
    pub access: &'static str,
    /// The deciding NSG's name; empty when none decided.
    pub nsg: String,
    /// `securityRules/NAME` or `defaultSecurityRules/NAME`; `(no NSG)` when
    /// the NIC's path has no NSG; empty for transit.
    pub rule: String,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl RuleTotals {
    /// Column names of a summary table, in [`Self::cells`] order.
    pub const HEADER: [&'static str; 7] = ["Direction", "Access", "NSG", "Rule", "Flows", "Packets", "Bytes"];

    /// The row of a summary table.
    pub fn cells(&self) -> [String; 7] {
        [
            self.direction.to_string(),
            self.access.to_string(),
            self.nsg.clone(),
            self.rule.clone(),
            self.flows.to_string(),
            self.packets.to_string(),
            self.bytes.to_string(),
        ]
    }
}

/// What [`VerdictRecords::finish`] reports.
#[derive(Debug, Default)]
pub struct VerdictSummary {
    /// Per verdict, sorted by direction, NSG, rule and access.
    pub totals: Vec<RuleTotals>,
    /// Tuples written, when flow logs were written.
    pub flow_logs: Option<FlowLogCounts>,
    /// Records and messages sent, when flows were exported.
    pub export: Option<ExportStats>,
}

impl VerdictSummary {
    /// Flows that ended, over all verdicts.
    pub fn flows(&self) -> u64 {
        self.totals.iter().map(|t| t.flows).sum()
    }

    /// IP bytes of those flows, both ways.
    pub fn bytes(&self) -> u64 {
        self.totals.iter().map(|t| t.bytes).sum()
    }
}

/// A verdict's number within one [`VerdictRecords`]: dense, in the order
/// the verdicts first came, so that an output can keep what it prints for
/// each in a vector (see [`VerdictRecords::names`]).
pub type VerdictId = u32;

/// A verdict as a hash key (its NSG and rule by index).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct VerdictKey(Option<Direction>, Access, Option<(u8, u32)>);

impl VerdictKey {
    fn of(v: &Verdict) -> Self {
        VerdictKey(v.direction, v.access, v.decided_by)
    }

    fn verdict(self) -> Verdict {
        Verdict {
            direction: self.0,
            access: self.1,
            decided_by: self.2,
        }
    }
}

#[derive(Default)]
struct Tally {
    flows: u64,
    packets: u64,
    bytes: u64,
}

/// One verdict of [`VerdictRecords`]: its names (looked up once) and its totals.
struct VerdictEntry {
    key: VerdictKey,
    names: VerdictNames,
    /// The rule in the flow-log spelling, for the export.
    export_rule: Option<Arc<str>>,
    tally: Tally,
}

/// Where the records of evaluated flows go besides the caller's own output:
/// NSG/VNet flow logs (written a minute at a time, as Azure does) and flow
/// export; and the totals per verdict. Records must come in time order, as
/// a [`FlowTable`] emits them.
///
/// An output that fails stops taking records and its error is kept: the
/// first one is returned by [`Self::finish`] (and by [`Self::take_error`],
/// for callers that stop at once).
pub struct VerdictRecords<'a, 'e> {
    /// `None`: no NSG verdicts (live capture without resources), every
    /// flow is transit.
    evaluator: Option<&'a NicEvaluator<'e>>,
    /// The verdicts seen, numbered by their index ([`VerdictId`]).
    entries: Vec<VerdictEntry>,
    /// Each verdict's number: one lookup per record (foldhash: this runs
    /// for every flow's records), none when it repeats the last one.
    ids: HashMap<VerdictKey, VerdictId, foldhash::fast::RandomState>,
    last: Option<(VerdictKey, VerdictId)>,
    logger: Option<FlowLogger>,
    exporter: Option<(FlowExporter, String)>,
    last_minute: i64,
    error: Option<RecordError>,
}

impl<'a, 'e> VerdictRecords<'a, 'e> {
    /// `exporter` comes with its target's name, for errors.
    pub fn new(evaluator: Option<&'a NicEvaluator<'e>>, logger: Option<FlowLogger>, exporter: Option<(FlowExporter, String)>) -> Self {
        VerdictRecords {
            evaluator,
            entries: Vec::new(),
            ids: HashMap::default(),
            last: None,
            logger,
            exporter,
            last_minute: i64::MIN,
            error: None,
        }
    }

    /// Hands one record to the flow logs and the export, counts it when it
    /// ends its flow, and returns its verdict's number (whose names
    /// [`Self::names`] gives).
    pub fn record(&mut self, r: &FlowRecord<Verdict>) -> VerdictId {
        let v = r.user;
        let key = VerdictKey::of(&v);
        let id = match self.last {
            Some((k, id)) if k == key => id,
            _ => {
                let (entries, evaluator) = (&mut self.entries, self.evaluator);
                let id = *self.ids.entry(key).or_insert_with(|| {
                    let (n, r) = evaluator.map_or((None, None), |e| e.names(&v));
                    entries.push(VerdictEntry {
                        key,
                        names: (n.map(Arc::from), r.map(Arc::from)),
                        export_rule: evaluator.and_then(|e| e.flow_log_rule_name(&v)).map(Arc::from),
                        tally: Tally::default(),
                    });
                    (entries.len() - 1) as VerdictId
                });
                self.last = Some((key, id));
                id
            }
        };
        let entry = &mut self.entries[id as usize];
        if let Some((x, target)) = &mut self.exporter {
            let d = NsgDecision {
                direction: v.direction,
                access: v.direction.map(|_| v.access),
                nsg_name: entry.names.0.as_deref().unwrap_or(""),
                rule_name: entry.export_rule.as_deref().unwrap_or(""),
            };
            if let Err(source) = x.export(r, Some(&d)) {
                let target = std::mem::take(target);
                self.exporter = None;
                self.error.get_or_insert(RecordError::Export { target, source });
            }
        }
        if let (Some(l), Some(e)) = (&mut self.logger, self.evaluator) {
            // Records come in time order: when a new minute starts, the
            // previous ones are complete and go to disk (Azure writes one
            // record per NSG per minute), so memory stays bounded and a
            // crash loses at most the current minute. An input that starts
            // before the previous one ended (another capture, a new flow
            // table) turns the clock back: everything held goes to disk
            // first, else the minutes held would wait for the new clock to
            // pass them; the writers merge a minute written again into its
            // record.
            let minute = r.at_ns.div_euclid(60_000_000_000);
            let res = if minute > self.last_minute {
                self.last_minute = minute;
                l.flush_before(r.at_ns).map_err(|e| e.to_string())
            } else if minute < self.last_minute {
                self.last_minute = minute;
                l.flush().map(drop).map_err(|e| e.to_string())
            } else {
                Ok(())
            }
            .and_then(|()| l.record(e, r).map_err(|e| e.to_string()));
            if let Err(e) = res {
                self.logger = None;
                self.error.get_or_insert(RecordError::FlowLog(e));
            }
        }
        if matches!(r.kind, FlowRecordKind::End(_)) && r.has_packets() {
            let tally = &mut entry.tally;
            tally.flows += 1;
            tally.packets += r.forward.packets + r.reverse.packets;
            tally.bytes += r.forward.bytes + r.reverse.bytes;
        }
        id
    }

    /// The deciding NSG's name and the qualified rule name of verdict `id`
    /// (as [`Self::record`] returned it), `None` where there is none; `None`
    /// for a number it did not return.
    pub fn names(&self, id: VerdictId) -> Option<&VerdictNames> {
        self.entries.get(id as usize).map(|e| &e.names)
    }

    /// The first error of an output, if one failed since the last call.
    pub fn take_error(&mut self) -> Option<RecordError> {
        self.error.take()
    }

    /// Sends the records the export holds in a partly filled message (live
    /// capture sends them every [`LIVE_TICK`] instead of waiting for a full
    /// message, which on a quiet link could take hours).
    pub fn flush_export(&mut self) {
        if let Some((x, target)) = &mut self.exporter {
            if let Err(source) = x.flush() {
                let target = std::mem::take(target);
                self.exporter = None;
                self.error.get_or_insert(RecordError::Export { target, source });
            }
        }
    }

    /// Writes what the flow logs and the export still hold; the totals per
    /// verdict. The first error of an output, if one failed.
    pub fn finish(mut self) -> Result<VerdictSummary, RecordError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let flow_logs = match &mut self.logger {
            Some(l) => Some(l.flush().map_err(|e| RecordError::FlowLog(e.to_string()))?),
            None => None,
        };
        let export = match &mut self.exporter {
            Some((x, target)) => {
                x.flush().map_err(|source| RecordError::Export {
                    target: target.clone(),
                    source,
                })?;
                Some(x.stats())
            }
            None => None,
        };
        Ok(VerdictSummary {
            totals: self.totals(),
            flow_logs,
            export,
        })
    }

    /// Totals per verdict of the flows ended so far, sorted by direction,
    /// NSG, rule and access.
    pub fn totals(&self) -> Vec<RuleTotals> {
        let mut out: Vec<RuleTotals> = Vec::new();
        for VerdictEntry { key, tally: t, .. } in &self.entries {
            if t.flows == 0 {
                continue; // only Begin/Report records so far
            }
            let v = key.verdict();
            let (nsg, rule) = self.evaluator.map_or((None, None), |e| e.names(&v));
            out.push(RuleTotals {
                direction: v.direction.map_or("Transit", |d| d.as_str()),
                access: match (v.direction, v.access) {
                    (None, _) => "",
                    (Some(_), a) => a.as_str(),
                },
                nsg: nsg.unwrap_or_default(),
                rule: rule.unwrap_or_else(|| if v.direction.is_some() { "(no NSG)".into() } else { String::new() }),
                flows: t.flows,
                packets: t.packets,
                bytes: t.bytes,
            });
        }
        // Verdicts whose names coincide (none in practice) are merged.
        out.sort_by(|a, b| (a.direction, &a.nsg, &a.rule, a.access).cmp(&(b.direction, &b.nsg, &b.rule, b.access)));
        out.dedup_by(|b, a| {
            let same = (a.direction, &a.nsg, &a.rule, a.access) == (b.direction, &b.nsg, &b.rule, b.access);
            if same {
                a.flows += b.flows;
                a.packets += b.packets;
                a.bytes += b.bytes;
            }
            same
        });
        out
    }
}

/// Counts of [`track_packets`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// IP packets tracked.
    pub packets: u64,
    /// Flows ended (all of them, once the packets end).
    pub flows: u64,
}

/// How often live tracking looks at the clock when no packet comes: flows
/// idle past their timeouts end on a quiet link too, and exported records
/// leave at least this often.
pub const LIVE_TICK: Duration = Duration::from_secs(1);

/// How far behind the wall clock the flow table's clock is moved on a quiet
/// link: packets still in the capture buffer (libpcap delivers them up to
/// its buffer timeout late) must not find their flow already ended.
const LIVE_CLOCK_SLACK: Duration = Duration::from_secs(2);

/// Tracks the flows of decoded live packets until the capture's tap
/// channel closes: each new flow decided by `evaluator` (transit without
/// one), every record handed to `records`. The table's clock is packet
/// time, and on a quiet link the wall clock (less 2 s of slack for packets still in flight),
/// checked every [`LIVE_TICK`]; records exported are sent at least as
/// often. Stops at the first error of an output.
pub fn track_packets(
    packets: &Receiver<TapPacket>,
    evaluator: Option<&NicEvaluator<'_>>,
    records: &mut VerdictRecords<'_, '_>,
) -> Result<LiveCounts, RecordError> {
    let mut table: FlowTable<Verdict> = FlowTable::new(FlowTableConfig::default()).map_err(|e| RecordError::Table(e.to_string()))?;
    // Later fragments that come before their first wait for it (up to 30 s
    // of capture time, as in a replay), then go on unattributed.
    let mut fragments = FragmentTracker::new(4096);
    let mut counts = LiveCounts::default();
    let mut last_tick = Instant::now();
    let observe = |table: &mut FlowTable<Verdict>, ts_ns: i64, meta: PacketMeta| {
        let info = packet_info(ts_ns, &meta);
        table.observe(&info, |t, _| evaluator.map_or(NicEvaluator::TRANSIT, |e| e.evaluate(t)));
    };
    loop {
        match packets.recv_timeout(LIVE_TICK) {
            Ok(p) => {
                counts.packets += 1;
                fragments.process_in_order(p.ts_ns, p.meta, &mut |t, m| observe(&mut table, t, m));
            }
            Err(RecvTimeoutError::Timeout) => {
                let wall = SystemTime::now()
                    .checked_sub(LIVE_CLOCK_SLACK)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                fragments.expire(wall, &mut |t, m| observe(&mut table, t, m));
                table.advance(wall);
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        drain_live(&mut table, &mut counts, records)?;
        if last_tick.elapsed() >= LIVE_TICK {
            last_tick = Instant::now();
            records.flush_export();
            if let Some(e) = records.take_error() {
                return Err(e);
            }
        }
    }
    fragments.release_all(&mut |t, m| observe(&mut table, t, m));
    table.finish();
    drain_live(&mut table, &mut counts, records)?;
    Ok(counts)
}

/// Hands the records `table` produced to `records`, counting ended flows.
fn drain_live(table: &mut FlowTable<Verdict>, counts: &mut LiveCounts, records: &mut VerdictRecords<'_, '_>) -> Result<(), RecordError> {
    for r in table.drain_records() {
        if matches!(r.kind, FlowRecordKind::End(_)) && r.has_packets() {
            counts.flows += 1;
        }
        records.record(&r);
        if let Some(e) = records.take_error() {
            return Err(e);
        }
    }
    Ok(())
}
