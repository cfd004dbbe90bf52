//! `netwatch flows` and `netwatch evaluate`: flows of capture files, and
//! their NSG verdicts from a NIC's perspective.

use std::borrow::Cow;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use netwatch::watcher::flow_logging::{FlowLogCounts, FlowLogOptions, FlowLogScope, FlowLogger};
use netwatch::watcher::replay::{
    host_addresses, parse_local, replay_with_progress, CaptureInput, CaptureStats, NicEvaluator, PacketStream, ReplayOptions,
    ReplayProgress, Spares, Verdict,
};
use netwatch::watcher::verdicts::{prepare_nic, track_packets, RuleTotals, VerdictId, VerdictNames, VerdictRecords};
use netwatch::watcher::NicView;
use netwatch_flowlogs::text::push_ip;
use netwatch_flowlogs::time::{Rfc3339Buf, Rfc3339Cache};
use netwatch_flowlogs::{
    EndReason, ExportClock, ExportOptions, ExportProtocol, ExportStats, FlowExporter, FlowRecord, FlowRecordKind, FlowState,
    FlowTableConfig, NsgFlowLogVersion,
};

use super::output::{csv_field, display_width, pad};
use super::ResourceArgs;

/// Output formats of the flow commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlowFormat {
    /// One JSON object per line (a flow; for flow-logs read, a tuple).
    Jsonl,
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
    /// Aligned columns for people (printed when all input is read).
    Table,
}

/// Reading options shared by `flows` and `evaluate`.
#[derive(Args, Debug)]
pub struct CaptureFileArgs {
    /// Capture files (pcap or pcapng, any link type netwatch decodes); `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
    /// Report the innermost packet of GRE, VXLAN and GENEVE tunnels instead of the outer one.
    #[arg(long)]
    decap: bool,
    /// Idle timeout of TCP flows, seconds (1 to 31536000).
    #[arg(long, value_name = "SECONDS", default_value_t = 240, value_parser = seconds())]
    tcp_idle_timeout: u64,
    /// Idle timeout of UDP, ICMP and other flows, seconds (1 to 31536000).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = seconds())]
    udp_idle_timeout: u64,
    /// Cut a flow's record after this many seconds, active or not, as NetFlow exporters do; the flow goes on in a new record with the same initiator and verdict (default: never). In flow logs a cut is a C tuple (Azure's come every 5 minutes).
    #[arg(long, value_name = "SECONDS", value_parser = seconds())]
    active_timeout: Option<u64>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = FlowFormat::Jsonl)]
    output: FlowFormat,
    #[command(flatten)]
    export: ExportArgs,
}

/// A timeout in seconds: at least 1, at most a year.
fn seconds() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..=365 * 24 * 3600)
}

/// `HOST:PORT` (the name is resolved when the export starts).
fn host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(s.to_string()),
        _ => Err("expected HOST:PORT, e.g. 127.0.0.1:4739 or collector.example:2055".into()),
    }
}

/// One `--local` value: an IP address or a CIDR prefix without host bits.
fn local_prefix(s: &str) -> Result<String, String> {
    parse_local(&[s.to_string()]).map(|_| s.to_string())
}

/// Standard flow export, shared by `flows`, `evaluate` and `capture`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Also export the flows to an IPFIX collector (RFC 7011 over UDP; RFC 5103 biflows).
    #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
    ipfix: Option<String>,
    /// With --ipfix: speak NetFlow v9 (RFC 3954) instead of IPFIX.
    #[arg(long, requires = "ipfix")]
    netflow_v9: bool,
}

impl ExportArgs {
    /// The collector, as given (for messages).
    fn target(&self) -> String {
        self.ipfix.clone().unwrap_or_default()
    }

    /// The exporter; `wall_clock` for live traffic, flow time for replays.
    fn exporter(&self, wall_clock: bool) -> Result<Option<FlowExporter>> {
        let Some(target) = &self.ipfix else { return Ok(None) };
        let addr = target
            .to_socket_addrs()
            .with_context(|| format!("--ipfix {target:?}: cannot resolve the collector's address"))?
            .next()
            .with_context(|| format!("--ipfix {target:?}: the name resolves to no address"))?;
        let protocol = if self.netflow_v9 {
            ExportProtocol::NetflowV9
        } else {
            ExportProtocol::Ipfix
        };
        // Replayed captures carry their own time: export it, not the wall clock.
        let clock = if wall_clock { ExportClock::Wall } else { ExportClock::FlowTime };
        let opts = ExportOptions {
            clock,
            ..ExportOptions::default()
        };
        Ok(Some(
            FlowExporter::new(addr, protocol, opts).with_context(|| format!("--ipfix {target}"))?,
        ))
    }
}

impl CaptureFileArgs {
    fn options(&self) -> ReplayOptions {
        // The parser bounds them to a year: no overflow.
        let ns = |v: u64| v as i64 * 1_000_000_000;
        let udp = ns(self.udp_idle_timeout);
        let table = FlowTableConfig {
            tcp_idle_ns: ns(self.tcp_idle_timeout),
            udp_idle_ns: udp,
            icmp_idle_ns: udp,
            other_idle_ns: udp,
            active_timeout_ns: self.active_timeout.map(ns),
            ..FlowTableConfig::default()
        };
        ReplayOptions { decap: self.decap, table }
    }

    /// A progress bar on stderr when it is a terminal; silent otherwise.
    fn progress(&self) -> impl FnMut(ReplayProgress) {
        let sizes: Vec<Option<u64>> = self
            .files
            .iter()
            .map(|f| {
                if f == "-" {
                    None
                } else {
                    std::fs::metadata(f).ok().map(|m| m.len())
                }
            })
            .collect();
        let bar = if io::stderr().is_terminal() {
            let total: Option<u64> = sizes.iter().copied().sum();
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t).with_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                ),
                None => indicatif::ProgressBar::new_spinner(),
            };
            Some(bar)
        } else {
            None
        };
        move |p: ReplayProgress| {
            if let Some(bar) = &bar {
                let done: u64 = sizes.iter().take(p.input).map(|s| s.unwrap_or(0)).sum();
                bar.set_position(done + p.input_bytes);
                bar.set_message(format!("{} packets", p.packets));
                if p.input + 1 == sizes.len() && sizes[p.input].is_some_and(|s| p.input_bytes >= s) {
                    bar.finish_and_clear();
                }
            }
        }
    }

    fn inputs(&self) -> Vec<CaptureInput> {
        self.files.iter().map(|f| CaptureInput::parse(f)).collect()
    }
}

#[derive(Args, Debug)]
pub struct FlowsArgs {
    #[command(flatten)]
    capture: CaptureFileArgs,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("resource-files").arg("resources").required(true)))]
pub struct EvaluateArgs {
    #[command(flatten)]
    resources: ResourceArgs,
    /// The NIC whose NSGs judge the traffic, by name or resource id.
    #[arg(long, value_name = "NAME|ID")]
    nic: String,
    /// Addresses that count as the NIC's own (CIDR or IP, repeatable), instead of the NIC's private IPs: replay any capture "as if" taken on that NIC.
    #[arg(long, value_name = "CIDR", value_parser = local_prefix)]
    local: Vec<String>,
    #[command(flatten)]
    logs: FlowLogArgs,
    #[command(flatten)]
    capture: CaptureFileArgs,
}

/// Flow-log output, shared by `evaluate` and `capture`.
#[derive(Args, Debug, Clone)]
pub struct FlowLogArgs {
    /// Write NSG flow logs (Azure's blob layout) under this directory.
    #[arg(long = "flow-logs", value_name = "DIR", requires_all = ["resources", "nic"])]
    flow_logs: Option<PathBuf>,
    /// NSG flow log format version (with --flow-logs).
    #[arg(long = "flow-log-version", value_name = "1|2", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2), requires = "flow_logs")]
    flow_log_version: u8,
    /// Write VNet flow logs (version 4, Azure's blob layout) under this directory.
    #[arg(long = "vnet-flow-logs", value_name = "DIR", requires_all = ["resources", "nic"])]
    vnet_flow_logs: Option<PathBuf>,
    /// What the VNet flow log is attached to (with --vnet-flow-logs).
    #[arg(long = "flow-log-target", value_enum, default_value_t = ScopeArg::Vnet, requires = "vnet_flow_logs")]
    flow_log_target: ScopeArg,
    /// Name of the VNet flow log resource (with --vnet-flow-logs; default: <target>-flowlog).
    #[arg(long = "flow-log-name", value_name = "NAME", requires = "vnet_flow_logs")]
    flow_log_name: Option<String>,
    /// Region of the Network Watcher that owns the VNet flow log (with --vnet-flow-logs; default: the target's location).
    #[arg(long = "flow-log-region", value_name = "REGION", requires = "vnet_flow_logs")]
    flow_log_region: Option<String>,
}

impl FlowLogArgs {
    fn wanted(&self) -> bool {
        self.flow_logs.is_some() || self.vnet_flow_logs.is_some()
    }

    fn options(&self) -> FlowLogOptions {
        FlowLogOptions {
            nsg_dir: self.flow_logs.clone(),
            nsg_version: Some(if self.flow_log_version == 1 {
                NsgFlowLogVersion::V1
            } else {
                NsgFlowLogVersion::V2
            }),
            vnet_dir: self.vnet_flow_logs.clone(),
            vnet_scope: Some(match self.flow_log_target {
                ScopeArg::Vnet => FlowLogScope::VirtualNetwork,
                ScopeArg::Subnet => FlowLogScope::Subnet,
                ScopeArg::Nic => FlowLogScope::NetworkInterface,
            }),
            vnet_flow_log_name: self.flow_log_name.clone(),
            vnet_region: self.flow_log_region.clone(),
        }
    }

    fn report(&self, c: FlowLogCounts) {
        if let Some(d) = &self.flow_logs {
            eprintln!("NSG flow logs: {} tuples under {}", c.nsg_tuples, d.display());
        }
        if let Some(d) = &self.vnet_flow_logs {
            eprintln!("VNet flow logs: {} tuples under {}", c.vnet_tuples, d.display());
        }
    }
}

/// `--flow-log-target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    Vnet,
    Subnet,
    Nic,
}

/// One flow, as printed. Cheap to build (no allocation): the verdict is a
/// number into the [`VerdictText`]s and times stay nanoseconds until they
/// are written.
struct FlowRow {
    protocol: u8,
    initiator: IpAddr,
    initiator_port: u16,
    responder: IpAddr,
    responder_port: u16,
    icmp_type: Option<u8>,
    /// TCP flags OR'd over each direction's packets (TCP flows only).
    tcp_flags: Option<(u8, u8)>,
    /// Initiator to responder.
    packets_sent: u64,
    bytes_sent: u64,
    /// Responder to initiator.
    packets_received: u64,
    bytes_received: u64,
    first_ns: i64,
    last_ns: i64,
    state: &'static str,
    end_reason: &'static str,
    /// `evaluate`: the flow's verdict.
    verdict: Option<VerdictId>,
}

/// How one verdict prints. Made once per verdict and shared by the rows of
/// its flows by number, not by reference count: rows are made on the flow
/// thread and dropped on the output thread, and a count both threads
/// changed for every row kept its cache line moving between the cores.
struct VerdictText {
    /// `Inbound`, `Outbound` or `Transit`.
    direction: &'static str,
    /// `Allow` or `Deny`; none for transit.
    access: Option<&'static str>,
    network_security_group: Option<Arc<str>>,
    rule_name: Option<Arc<str>>,
    /// The JSON members of all four, as a row's line carries them.
    json: Vec<u8>,
}

impl VerdictText {
    fn new(v: &Verdict, (nsg, rule): &VerdictNames) -> Self {
        let direction = v.direction.map_or("Transit", |d| d.as_str());
        let access = v.direction.map(|_| v.access.as_str());
        // Direction and access are this module's own identifiers: nothing to escape.
        let mut json = format!(",\"direction\":\"{direction}\"").into_bytes();
        if let Some(a) = access {
            json.extend_from_slice(format!(",\"access\":\"{a}\"").as_bytes());
        }
        for (key, v) in [(",\"networkSecurityGroup\":", nsg), (",\"ruleName\":", rule)] {
            if let Some(v) = v {
                json.extend_from_slice(key.as_bytes());
                json_str(&mut json, v);
            }
        }
        VerdictText {
            direction,
            access,
            network_security_group: nsg.clone(),
            rule_name: rule.clone(),
            json,
        }
    }
}

/// The [`VerdictText`] of each [`VerdictId`] seen so far.
#[derive(Default)]
struct VerdictTexts(Vec<Option<Arc<VerdictText>>>);

impl VerdictTexts {
    fn get(&self, id: Option<VerdictId>) -> Option<&VerdictText> {
        self.0.get(id? as usize)?.as_deref()
    }

    /// Whether `id` has its text.
    fn has(&self, id: VerdictId) -> bool {
        self.get(Some(id)).is_some()
    }

    fn set(&mut self, id: VerdictId, text: Arc<VerdictText>) {
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(text);
    }
}

impl FlowRow {
    /// One JSON object (the `-o jsonl` line, without the newline), in the
    /// key order the documentation shows.
    fn write_json(&self, out: &mut Vec<u8>, times: &mut Rfc3339Cache, verdicts: &VerdictTexts) {
        let mut n = itoa::Buffer::new();
        let mut num = |out: &mut Vec<u8>, key: &str, v: u64| {
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(n.format(v).as_bytes());
        };
        out.extend_from_slice(b"{\"protocol\":");
        json_str(out, &protocol_name(self.protocol));
        out.extend_from_slice(b",\"initiator\":\"");
        push_ip(out, self.initiator);
        out.push(b'"');
        num(out, ",\"initiatorPort\":", self.initiator_port.into());
        out.extend_from_slice(b",\"responder\":\"");
        push_ip(out, self.responder);
        out.push(b'"');
        num(out, ",\"responderPort\":", self.responder_port.into());
        if let Some(t) = self.icmp_type {
            num(out, ",\"icmpType\":", t.into());
        }
        num(out, ",\"packetsSent\":", self.packets_sent);
        num(out, ",\"bytesSent\":", self.bytes_sent);
        num(out, ",\"packetsReceived\":", self.packets_received);
        num(out, ",\"bytesReceived\":", self.bytes_received);
        if let Some((sent, received)) = self.tcp_flags {
            out.extend_from_slice(b",\"tcpFlagsSent\":\"");
            out.extend_from_slice(&tcp_flags_text(sent));
            out.extend_from_slice(b"\",\"tcpFlagsReceived\":\"");
            out.extend_from_slice(&tcp_flags_text(received));
            out.push(b'"');
        }
        out.extend_from_slice(b",\"firstTime\":\"");
        out.extend_from_slice(times.format_bytes(self.first_ns));
        out.extend_from_slice(b"\",\"lastTime\":\"");
        out.extend_from_slice(times.format_bytes(self.last_ns));
        // State and end reason are this module's own identifiers: nothing
        // to escape.
        out.extend_from_slice(b"\",\"state\":\"");
        out.extend_from_slice(self.state.as_bytes());
        out.extend_from_slice(b"\",\"endReason\":\"");
        out.extend_from_slice(self.end_reason.as_bytes());
        out.push(b'"');
        if let Some(v) = verdicts.get(self.verdict) {
            out.extend_from_slice(&v.json);
        }
        out.push(b'}');
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // A fold without an early exit: vectorised, where `all` is a branch a byte.
    if s.bytes().fold(true, |plain, c| plain & (c >= 0x20) & (c != b'"') & (c != b'\\')) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// TCP flags as nfdump prints them: `CEUAPRSF` (CWR, ECE, URG, ACK, PSH,
/// RST, SYN, FIN; RFC 9293 §3.1, RFC 3168), `.` for a flag not seen.
fn tcp_flags_text(flags: u8) -> [u8; 8] {
    let mut t = *b"CEUAPRSF";
    for (i, c) in t.iter_mut().enumerate() {
        if flags & (0x80 >> i) == 0 {
            *c = b'.';
        }
    }
    t
}

const CSV_COLUMNS: &[&str] = &[
    "protocol",
    "initiator",
    "initiatorPort",
    "responder",
    "responderPort",
    "packetsSent",
    "bytesSent",
    "packetsReceived",
    "bytesReceived",
    "firstTime",
    "lastTime",
    "state",
    "endReason",
    "direction",
    "access",
    "networkSecurityGroup",
    "ruleName",
    "icmpType",
    "tcpFlagsSent",
    "tcpFlagsReceived",
];

fn protocol_name(p: u8) -> Cow<'static, str> {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        50 => "ESP".into(),
        51 => "AH".into(),
        47 => "GRE".into(),
        n => n.to_string().into(),
    }
}

fn state_name(s: FlowState) -> &'static str {
    match s {
        FlowState::Begin => "Begin",
        FlowState::Established => "Established",
        FlowState::Ended => "Ended",
    }
}

fn end_name(k: FlowRecordKind) -> &'static str {
    match k {
        FlowRecordKind::End(EndReason::TcpFin) => "TcpFin",
        FlowRecordKind::End(EndReason::TcpRst) => "TcpRst",
        FlowRecordKind::End(EndReason::IdleTimeout) => "IdleTimeout",
        FlowRecordKind::End(EndReason::ActiveTimeout) => "ActiveTimeout",
        FlowRecordKind::End(EndReason::Reused) => "PortReused",
        FlowRecordKind::End(EndReason::Evicted) => "Evicted",
        FlowRecordKind::End(EndReason::Flushed) => "EndOfCapture",
        _ => "",
    }
}

fn row<T>(r: &FlowRecord<T>) -> FlowRow {
    FlowRow {
        protocol: r.tuple.protocol,
        initiator: r.tuple.src,
        initiator_port: r.tuple.src_port,
        responder: r.tuple.dst,
        responder_port: r.tuple.dst_port,
        icmp_type: r.icmp.map(|i| i.icmp_type),
        tcp_flags: (r.tuple.protocol == 6).then_some((r.forward.tcp_flags, r.reverse.tcp_flags)),
        packets_sent: r.forward.packets,
        bytes_sent: r.forward.bytes,
        packets_received: r.reverse.packets,
        bytes_received: r.reverse.bytes,
        first_ns: r.first_ns,
        last_ns: r.last_ns,
        state: state_name(r.state),
        end_reason: end_name(r.kind),
        verdict: None,
    }
}

/// Rows per batch handed to the output thread.
const ROW_BATCH: usize = 256;

/// What the output thread gets: rows to format, or JSON lines the flow
/// thread formatted itself.
enum RowChunk {
    Rows(Vec<FlowRow>),
    /// The text of a verdict, before the first row that has it.
    Verdict(VerdictId, Arc<VerdictText>),
    Jsonl(Vec<u8>),
    /// The run failed: write nothing more (no table), keep whole lines.
    Abort,
}

/// Rows formatted and written on a thread of their own, in batches. At the
/// end of a capture most flows end at once and rows come faster than one
/// thread formats them: then (the channel is full) the flow thread formats
/// batches too, as JSON lines, on the core the decoding left. The channel
/// keeps the order either way.
struct RowSender {
    format: FlowFormat,
    batch: Vec<FlowRow>,
    /// The flow thread's own time cache, for the lines it formats.
    times: Rfc3339Cache,
    /// Batches the flow thread formatted.
    formatted_here: usize,
    /// Rows handed over so far.
    rows: u64,
    tx: Option<SyncSender<RowChunk>>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Batches and formatted lines the output thread is done with.
    spare_rows: Spares<FlowRow>,
    spare_lines: Spares<u8>,
    /// The verdicts' texts, for the batches formatted here.
    verdicts: VerdictTexts,
}

impl RowSender {
    fn new(format: FlowFormat) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<RowChunk>(16);
        let (spare_rows, spare_lines) = (Spares::default(), Spares::default());
        let (rows_back, lines_back) = (spare_rows.clone(), spare_lines.clone());
        let thread = thread::Builder::new()
            .name("netwatch-output".into())
            .spawn(move || {
                let mut w = RowWriter::new(format);
                // After an error (a closed pipe), the rest is only drained.
                let mut failed = None;
                let mut aborted = false;
                for chunk in rx {
                    if failed.is_some() || aborted {
                        continue;
                    }
                    let res = match chunk {
                        RowChunk::Rows(mut batch) => {
                            let res = w.write_batch(&mut batch);
                            rows_back.put(batch);
                            res
                        }
                        RowChunk::Verdict(id, text) => {
                            w.verdicts.set(id, text);
                            Ok(())
                        }
                        RowChunk::Jsonl(bytes) => {
                            let res = w.out.write_all(&bytes);
                            lines_back.put(bytes);
                            res
                        }
                        RowChunk::Abort => {
                            aborted = true;
                            w.out.flush()
                        }
                    };
                    if let Err(e) = res {
                        failed = Some(e);
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None if aborted => Ok(()),
                    None => w.finish(),
                }
            })
            .context("starting the output thread")?;
        Ok(RowSender {
            format,
            batch: Vec::with_capacity(ROW_BATCH),
            times: Rfc3339Cache::default(),
            formatted_here: 0,
            rows: 0,
            tx: Some(tx),
            thread: Some(thread),
            spare_rows,
            spare_lines,
            verdicts: VerdictTexts::default(),
        })
    }

    /// After `e` ended the run: the rows so far are written as whole lines
    /// (a table, printed only at the end, is not), the output thread is
    /// done before the process exits, and the error says what stdout holds.
    fn abandon(mut self, e: anyhow::Error) -> anyhow::Error {
        self.send();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(RowChunk::Abort);
        }
        let _ = self.thread.take().map(JoinHandle::join);
        match (self.format, self.rows) {
            (FlowFormat::Table, _) | (_, 0) => e,
            (_, n) => anyhow::anyhow!("{} (the {n} flow records ended before it are on stdout)", super::one_line(&e)),
        }
    }

    /// Makes sure the rows of verdict `id` print `text()`, made once.
    fn verdict(&mut self, id: VerdictId, text: impl FnOnce() -> VerdictText) {
        if self.verdicts.has(id) {
            return;
        }
        let text = Arc::new(text());
        self.verdicts.set(id, text.clone());
        if let Some(tx) = &self.tx {
            // In order with the batches: it comes before the rows that need it.
            let _ = tx.send(RowChunk::Verdict(id, text));
        }
    }

    fn write(&mut self, r: FlowRow) {
        self.rows += 1;
        self.batch.push(r);
        if self.batch.len() >= ROW_BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let batch = std::mem::replace(&mut self.batch, self.spare_rows.take(ROW_BATCH));
        let Some(tx) = &self.tx else { return };
        // A failed send means the thread ended; `finish` reports why.
        match tx.try_send(RowChunk::Rows(batch)) {
            Err(TrySendError::Full(RowChunk::Rows(batch))) if self.format == FlowFormat::Jsonl => {
                // ~420 bytes a row: 256 rows stay under the C allocator's
                // 128 KiB threshold for a memory map of their own (whose
                // unmapping on the output thread would flush both cores' TLBs).
                let mut bytes = self.spare_lines.take(batch.len() * 440);
                push_jsonl(&batch, &mut bytes, &mut self.times, &self.verdicts);
                self.formatted_here += 1;
                self.spare_rows.put(batch);
                let _ = tx.send(RowChunk::Jsonl(bytes));
            }
            Err(TrySendError::Full(chunk)) => {
                let _ = tx.send(chunk);
            }
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Writes the last rows and returns the first write error.
    fn finish(mut self) -> io::Result<()> {
        self.send();
        self.tx = None;
        tracing::debug!(batches = self.formatted_here, "row batches formatted on the flow thread");
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the output thread failed")),
            None => Ok(()),
        }
    }
}

/// Appends one JSON line per row.
fn push_jsonl(rows: &[FlowRow], out: &mut Vec<u8>, times: &mut Rfc3339Cache, verdicts: &VerdictTexts) {
    for r in rows {
        r.write_json(out, times, verdicts);
        out.push(b'\n');
    }
}

/// Streams rows in the chosen format.
struct RowWriter {
    out: BufWriter<io::Stdout>,
    /// The JSON lines of a batch, written at once (larger than the
    /// BufWriter's buffer, they go straight to the output, without a copy).
    lines: Vec<u8>,
    times: Rfc3339Cache,
    format: FlowFormat,
    table: Vec<FlowRow>,
    header_done: bool,
    verdicts: VerdictTexts,
}

impl RowWriter {
    fn new(format: FlowFormat) -> Self {
        RowWriter {
            out: BufWriter::with_capacity(1 << 16, io::stdout()),
            lines: Vec::new(),
            times: Rfc3339Cache::default(),
            format,
            table: Vec::new(),
            header_done: false,
            verdicts: VerdictTexts::default(),
        }
    }

    /// Writes the rows of `rows`, leaving it empty.
    fn write_batch(&mut self, rows: &mut Vec<FlowRow>) -> io::Result<()> {
        match self.format {
            FlowFormat::Jsonl => {
                self.lines.clear();
                push_jsonl(rows, &mut self.lines, &mut self.times, &self.verdicts);
                rows.clear();
                self.out.write_all(&self.lines)
            }
            _ => rows.drain(..).try_for_each(|r| self.write(r)),
        }
    }

    /// One CSV row, or a row kept for the table (JSON lines go by batch).
    fn write(&mut self, r: FlowRow) -> io::Result<()> {
        match self.format {
            FlowFormat::Jsonl => {
                self.lines.clear();
                push_jsonl(std::slice::from_ref(&r), &mut self.lines, &mut self.times, &self.verdicts);
                self.out.write_all(&self.lines)
            }
            FlowFormat::Csv => {
                let v = self.verdicts.get(r.verdict);
                if !self.header_done {
                    writeln!(self.out, "{}", CSV_COLUMNS.join(","))?;
                    self.header_done = true;
                }
                writeln!(
                    self.out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    protocol_name(r.protocol),
                    r.initiator,
                    r.initiator_port,
                    r.responder,
                    r.responder_port,
                    r.packets_sent,
                    r.bytes_sent,
                    r.packets_received,
                    r.bytes_received,
                    Rfc3339Buf::new(r.first_ns).as_str(),
                    Rfc3339Buf::new(r.last_ns).as_str(),
                    r.state,
                    r.end_reason,
                    v.map_or("", |v| v.direction),
                    v.and_then(|v| v.access).unwrap_or(""),
                    csv_field(v.and_then(|v| v.network_security_group.as_deref()).unwrap_or("")),
                    csv_field(v.and_then(|v| v.rule_name.as_deref()).unwrap_or("")),
                    r.icmp_type.map(|t| t.to_string()).unwrap_or_default(),
                    r.tcp_flags
                        .map(|(f, _)| tcp_flags_text(f))
                        .as_ref()
                        .map_or("", |t| std::str::from_utf8(t).unwrap_or("")),
                    r.tcp_flags
                        .map(|(_, f)| tcp_flags_text(f))
                        .as_ref()
                        .map_or("", |t| std::str::from_utf8(t).unwrap_or(""))
                )
            }
            FlowFormat::Table => {
                self.table.push(r);
                Ok(())
            }
        }
    }

    fn finish(mut self) -> io::Result<()> {
        if self.format == FlowFormat::Table {
            let evaluated = self.table.iter().any(|r| r.verdict.is_some());
            let mut rows: Vec<Vec<String>> = vec![{
                let mut h: Vec<String> = [
                    "Proto",
                    "Initiator",
                    "Responder",
                    "Pkts>",
                    "Bytes>",
                    "Pkts<",
                    "Bytes<",
                    "First",
                    "Duration",
                    "End",
                    "Flags>/<",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if evaluated {
                    h.extend(["Direction", "Access", "NSG", "Rule"].iter().map(|s| s.to_string()));
                }
                h
            }];
            for r in &self.table {
                let ep = |ip: IpAddr, port: u16| match ip {
                    IpAddr::V4(_) => format!("{ip}:{port}"),
                    IpAddr::V6(_) => format!("[{ip}]:{port}"),
                };
                let (first, last) = (r.first_ns, r.last_ns);
                let mut v = vec![
                    protocol_name(r.protocol).into_owned(),
                    ep(r.initiator, r.initiator_port),
                    ep(r.responder, r.responder_port),
                    r.packets_sent.to_string(),
                    r.bytes_sent.to_string(),
                    r.packets_received.to_string(),
                    r.bytes_received.to_string(),
                    Rfc3339Buf::new(first).millis(),
                    format!("{:.3}s", (last - first) as f64 / 1e9),
                    r.end_reason.to_string(),
                    // TCP flags each way, as the JSON lines' tcpFlagsSent
                    // and tcpFlagsReceived (nfdump's letters).
                    r.tcp_flags.map_or_else(String::new, |(sent, received)| {
                        let (s, r) = (tcp_flags_text(sent), tcp_flags_text(received));
                        format!("{}/{}", String::from_utf8_lossy(&s), String::from_utf8_lossy(&r))
                    }),
                ];
                if evaluated {
                    let t = self.verdicts.get(r.verdict);
                    v.push(t.map_or("Transit", |t| t.direction).to_string());
                    v.push(t.and_then(|t| t.access).unwrap_or("").to_string());
                    v.push(t.and_then(|t| t.network_security_group.as_deref()).unwrap_or_default().to_string());
                    v.push(t.and_then(|t| t.rule_name.as_deref()).unwrap_or_default().to_string());
                }
                rows.push(v);
            }
            write_columns(&mut self.out, &rows)?;
        }
        self.out.flush()
    }
}

/// Writes rows as aligned columns.
pub fn write_columns(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(display_width(c));
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&pad(c, w[i]));
                line.push_str("  ");
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn report_stats(s: &CaptureStats, flows: u64, bytes: u64) {
    for w in &s.warnings {
        tracing::warn!("{w}");
    }
    eprintln!(
        "{} flows, {} packets ({} IP, {} non-IP, {} truncated), {} IP bytes, {} file(s)",
        flows, s.packets, s.ip_packets, s.non_ip_frames, s.truncated_packets, bytes, s.files
    );
}

/// `netwatch flows`.
pub fn flows(a: FlowsArgs) -> Result<()> {
    let mut opts = a.capture.options();
    // Begin records feed only the export's record counts.
    opts.table.emit_begin = a.capture.export.ipfix.is_some();
    let mut out = RowSender::new(a.capture.output)?;
    let (mut flows, mut bytes) = (0u64, 0u64);
    let mut exporter = a.capture.export.exporter(false)?;
    let mut export_err: Option<io::Error> = None;
    let stats = replay_with_progress(
        &a.capture.inputs(),
        &opts,
        |_| (),
        |r| {
            if let (Some(x), None) = (exporter.as_mut(), export_err.as_ref()) {
                if let Err(e) = x.export(&r, None) {
                    export_err = Some(e);
                }
            }
            // Ends only; not the empty end after an active timeout's cut.
            if matches!(r.kind, FlowRecordKind::End(_)) && r.has_packets() {
                flows += 1;
                bytes += r.forward.bytes + r.reverse.bytes;
                out.write(row(&r));
            }
        },
        a.capture.progress(),
    );
    let stats = match stats {
        Ok(s) => s,
        Err(e) => return Err(out.abandon(e.into())),
    };
    if let Some(e) = export_err {
        return Err(anyhow::Error::from(e).context(format!("exporting flows to {}", a.capture.export.target())));
    }
    if let Some(mut x) = exporter {
        x.flush()
            .with_context(|| format!("exporting flows to {}", a.capture.export.target()))?;
        report_export(Some(x.stats()), &a.capture.export);
    }
    out.finish()?;
    report_stats(&stats, flows, bytes);
    Ok(())
}

/// The export's counts, on stderr.
fn report_export(stats: Option<ExportStats>, args: &ExportArgs) {
    if let Some(s) = stats {
        eprintln!(
            "exported {} flow records in {} messages to {}",
            s.data_records,
            s.messages,
            args.target()
        );
    }
}

/// `netwatch evaluate`.
pub fn evaluate(a: EvaluateArgs) -> Result<()> {
    let mut opts = a.capture.options();
    // Begin records feed only flow logs (B tuples) and the export's record
    // counts; the rows and totals are made of End records.
    opts.table.emit_begin = a.logs.wanted() || a.capture.export.ipfix.is_some();
    // Reading, decoding and tracking start now, on their own thread, while
    // the resources load and the rules compile here; the flows tracked
    // meanwhile get their verdicts when `track` takes them over.
    let stream = PacketStream::start_tracking(&a.capture.inputs(), &opts, NicEvaluator::TRANSIT);
    let started = std::time::Instant::now();
    let env = a.resources.load()?;
    tracing::debug!(elapsed = ?started.elapsed(), "resources loaded");
    let local = if a.local.is_empty() {
        None
    } else {
        Some(parse_local(&a.local).map_err(anyhow::Error::msg)?)
    };
    let (view, evaluator) = prepare_nic(&env, &a.nic, local)?;
    tracing::debug!(elapsed = ?started.elapsed(), "NSG rules compiled");
    let log_opts = a.logs.options();
    let logger = if log_opts.nsg_dir.is_some() || log_opts.vnet_dir.is_some() {
        Some(FlowLogger::new(&view, &evaluator, &log_opts)?)
    } else {
        None
    };
    let exporter = a.capture.export.exporter(false)?.map(|x| (x, a.capture.export.target()));
    let mut records = VerdictRecords::new(Some(&evaluator), logger, exporter);
    let mut out = RowSender::new(a.capture.output)?;
    let stats = stream.track(
        &opts,
        |t| evaluator.evaluate(t),
        |r| {
            let id = records.record(&r);
            if !matches!(r.kind, FlowRecordKind::End(_)) || !r.has_packets() {
                return;
            }
            let v = r.user;
            let mut fr = row(&r);
            out.verdict(id, || VerdictText::new(&v, records.names(id).unwrap_or(&(None, None))));
            fr.verdict = Some(id);
            out.write(fr);
        },
        a.capture.progress(),
    );
    let stats = match stats {
        Ok(s) => s,
        Err(e) => return Err(out.abandon(e.into())),
    };
    let summary = records.finish()?;
    if let Some(c) = summary.flow_logs {
        a.logs.report(c);
    }
    report_export(summary.export, &a.capture.export);
    out.finish()?;
    report_stats(&stats, summary.flows(), summary.bytes());
    let mut rows = vec![RuleTotals::HEADER.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    rows.extend(summary.totals.iter().map(|t| t.cells().to_vec()));
    let stderr = io::stderr();
    let mut e = stderr.lock();
    write_columns(&mut e, &rows).context("writing the summary")?;
    tracing::debug!("summary written");
    // The command is done and the process about to exit: the compiled
    // rules and the parsed resources (tens of thousands of allocations)
    // are left to the OS, which takes them back at once, instead of being
    // freed one by one.
    std::mem::forget(evaluator);
    std::mem::forget(view);
    std::mem::forget(env);
    Ok(())
}

/// Flow tracking of live traffic: `capture --flow-logs / --vnet-flow-logs / --ipfix`.
#[derive(Args, Debug)]
pub struct LiveFlowArgs {
    /// NSG verdicts of the captured flows come from these resources (needed with --flow-logs and --vnet-flow-logs).
    #[command(flatten)]
    resources: ResourceArgs,
    /// The NIC whose NSGs judge the captured traffic, by name or resource id.
    #[arg(long = "nic", value_name = "NAME|ID")]
    nic: Option<String>,
    #[command(flatten)]
    logs: FlowLogArgs,
    #[command(flatten)]
    export: ExportArgs,
}

impl LiveFlowArgs {
    /// Whether live flows are wanted at all.
    pub fn wanted(&self) -> bool {
        self.logs.wanted() || self.export.ipfix.is_some()
    }

    /// Options that serve only live flows (the NSG verdicts of the captured
    /// traffic) are usage errors without them, and so is half of the pair
    /// --resources/--nic with --ipfix: they would be silently ignored.
    pub fn check_usage(&self) {
        let (resources, nic) = (!self.resources.resources.is_empty(), self.nic.is_some());
        let given: Vec<&str> = [
            ("--resources", resources),
            ("--service-tags", self.resources.service_tags.is_some()),
            ("--nic", nic),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if !self.wanted() && !given.is_empty() {
            let serve = if given.len() == 1 { "serves" } else { "serve" };
            super::usage_error(&format!(
                "{} {serve} only --flow-logs, --vnet-flow-logs and --ipfix (the NSG verdicts of the captured flows); a capture alone does not use them",
                given.join(" and ")
            ));
        }
        match (resources, nic) {
            (true, false) => super::usage_error("--resources needs --nic: the NIC whose NSGs judge the captured flows"),
            (false, true) => super::usage_error("--nic needs --resources: the resources that hold the NIC and its NSGs"),
            (false, false) if self.resources.service_tags.is_some() => {
                super::usage_error("--service-tags needs --resources and --nic: the NSG rules that use the tags")
            }
            _ => {}
        }
    }

    /// The environment, when verdicts are wanted.
    pub fn load(&self) -> Result<Option<netwatch::Environment>> {
        // Flow logs come with --resources and --nic (clap requires them).
        if self.resources.resources.is_empty() || self.nic.is_none() {
            return Ok(None);
        }
        Ok(Some(self.resources.load()?))
    }
}

/// What live flow tracking needs: the NIC's compiled NSGs, the flow-log
/// writers and the exporter. Prepared before the capture starts, so that a
/// wrong `--nic` or an unresolvable `--ipfix` collector fails at once instead
/// of after the whole capture (up to 5 hours).
pub struct LiveTracker<'e> {
    prepared: Option<(NicView<'e>, NicEvaluator<'e>)>,
    logger: Option<FlowLogger>,
    exporter: Option<(FlowExporter, String)>,
}

impl LiveFlowArgs {
    /// The tracker of the flows: NSG verdicts when `env` is given, flow
    /// logs, export. `local` overrides the NIC's addresses as "local"
    /// (`--local-ip`).
    pub fn prepare<'e>(&self, env: Option<&'e netwatch::Environment>, local: &[IpAddr]) -> Result<LiveTracker<'e>> {
        let local = (!local.is_empty()).then(|| host_addresses(local.iter().copied()));
        let prepared = match (env, &self.nic) {
            (Some(env), Some(nic)) => Some(prepare_nic(env, nic, local)?),
            _ => None,
        };
        let logger = match &prepared {
            Some((view, ev)) if self.logs.wanted() => Some(FlowLogger::new(view, ev, &self.logs.options())?),
            _ => None,
        };
        let exporter = self.export.exporter(true)?.map(|x| (x, self.export.target()));
        Ok(LiveTracker {
            prepared,
            logger,
            exporter,
        })
    }
}

/// Tracks the flows of live packets from `rx` until the capture ends (the
/// channel closes), with a tracker from [`LiveFlowArgs::prepare`].
pub fn track_live(
    args: &LiveFlowArgs,
    tracker: LiveTracker<'_>,
    rx: std::sync::mpsc::Receiver<netwatch_capture::live::TapPacket>,
) -> Result<()> {
    let LiveTracker {
        prepared,
        logger,
        exporter,
    } = tracker;
    let evaluator = prepared.as_ref().map(|(_, e)| e);
    let mut records = VerdictRecords::new(evaluator, logger, exporter);
    let counts = track_packets(&rx, evaluator, &mut records)?;
    let summary = records.finish()?;
    if let Some(c) = summary.flow_logs {
        args.logs.report(c);
    }
    report_export(summary.export, &args.export);
    eprintln!("{} flows in {} IP packets tracked live", counts.flows, counts.packets);
    Ok(())
}
