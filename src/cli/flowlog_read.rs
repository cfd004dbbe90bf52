//! `netwatch flow-logs read`: NSG (v1, v2) and VNet (v4) flow-log files,
//! Azure's or ours, one row per tuple: JSON lines (Azure's field names and
//! epoch times, plus the tuple's time in RFC 3339), CSV or a table.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use netwatch_flowlogs::time::Rfc3339Buf;
use netwatch_flowlogs::{read_file, FlowLogRecord};
use serde_json::{json, Value};

use super::flows::{write_columns, FlowFormat};

#[derive(Subcommand, Debug)]
pub enum FlowLogsCommand {
    /// Read flow-log files (a file, or a directory searched for *.json / *.ndjson) and print every tuple.
    Read(ReadArgs),
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// Files or directories.
    #[arg(value_name = "DIR|FILE", required = true)]
    paths: Vec<PathBuf>,
    /// Print only a count of files, records and tuples.
    #[arg(long)]
    summary: bool,
    /// Output format (table: printed when every file is read).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = FlowFormat::Jsonl)]
    output: FlowFormat,
}

/// The columns of `-o csv` and `-o table`, one per tuple.
const COLUMNS: [&str; 14] = [
    "time",
    "format",
    "rule",
    "mac",
    "direction",
    "decision",
    "state",
    "protocol",
    "source",
    "destination",
    "packetsSent",
    "bytesSent",
    "packetsReceived",
    "bytesReceived",
];

/// A tuple as printed: its JSON object and its flat cells.
struct Tuple {
    json: Value,
    /// One per [`COLUMNS`] entry.
    cells: Vec<String>,
}

fn endpoint(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(_) => format!("{ip}:{port}"),
        std::net::IpAddr::V6(_) => format!("[{ip}]:{port}"),
    }
}

/// Packets and bytes each way as cells; empty when the tuple has none.
fn counter_cells(c: Option<netwatch_flowlogs::TupleCounters>) -> [String; 4] {
    match c {
        Some(c) => [
            c.packets_src_to_dst.to_string(),
            c.bytes_src_to_dst.to_string(),
            c.packets_dst_to_src.to_string(),
            c.bytes_dst_to_src.to_string(),
        ],
        None => Default::default(),
    }
}

/// RFC 3339 UTC of epoch milliseconds (`...T12:00:00.000Z`).
fn rfc3339_ms(ms: i64) -> String {
    Rfc3339Buf::new(ms.saturating_mul(1_000_000)).millis()
}

fn tuples(rec: &FlowLogRecord, mut each: impl FnMut(Tuple)) {
    match rec {
        FlowLogRecord::Nsg(r) => {
            for (rule, mac, t) in r.tuples() {
                let c = t.counters;
                let time = rfc3339_ms(t.time_s.saturating_mul(1000));
                let format = format!("NSG v{}", r.version);
                let state = t.state.map(|s| s.letter().to_string());
                let json = json!({
                    "format": format,
                    "time": r.time, "resourceId": r.resource_id, "rule": rule, "mac": mac,
                    "timestamp": t.time_s, "tupleTime": time, "source": t.src, "destination": t.dst,
                    "sourcePort": t.src_port, "destinationPort": t.dst_port,
                    "protocol": t.protocol.number(), "direction": t.direction.as_str(), "decision": t.decision.as_str(),
                    "state": state,
                    "packetsSourceToDestination": c.map(|c| c.packets_src_to_dst), "bytesSourceToDestination": c.map(|c| c.bytes_src_to_dst),
                    "packetsDestinationToSource": c.map(|c| c.packets_dst_to_src), "bytesDestinationToSource": c.map(|c| c.bytes_dst_to_src),
                });
                let mut cells = vec![
                    time,
                    format,
                    rule.to_string(),
                    mac.to_string(),
                    t.direction.as_str().to_string(),
                    t.decision.as_str().to_string(),
                    state.unwrap_or_default(),
                    t.protocol.number().to_string(),
                    endpoint(t.src, t.src_port),
                    endpoint(t.dst, t.dst_port),
                ];
                cells.extend(counter_cells(c));
                each(Tuple { json, cells });
            }
        }
        FlowLogRecord::Vnet(r) => {
            for (acl, rule, t) in r.tuples() {
                let c = t.counters;
                let time = rfc3339_ms(t.time_ms);
                let format = format!("VNet v{}", r.flow_log_version);
                let json = json!({
                    "format": format,
                    "time": r.time, "flowLogResourceID": r.flow_log_resource_id, "targetResourceID": r.target_resource_id,
                    "aclID": acl, "rule": rule, "mac": r.mac_address,
                    "timestampMs": t.time_ms, "tupleTime": time, "source": t.src, "destination": t.dst,
                    "sourcePort": t.src_port, "destinationPort": t.dst_port,
                    "protocol": t.protocol, "direction": t.direction.as_str(), "state": t.state.letter().to_string(),
                    "encryption": t.encryption.as_str(),
                    "packetsSent": c.map(|c| c.packets_src_to_dst), "bytesSent": c.map(|c| c.bytes_src_to_dst),
                    "packetsReceived": c.map(|c| c.packets_dst_to_src), "bytesReceived": c.map(|c| c.bytes_dst_to_src),
                });
                let mut cells = vec![
                    time,
                    format,
                    rule.to_string(),
                    r.mac_address.to_string(),
                    t.direction.as_str().to_string(),
                    // VNet flow logs carry no decision: denied flows are
                    // state D (spec §7.3).
                    String::new(),
                    t.state.letter().to_string(),
                    t.protocol.to_string(),
                    endpoint(t.src, t.src_port),
                    endpoint(t.dst, t.dst_port),
                ];
                cells.extend(counter_cells(c));
                each(Tuple { json, cells });
            }
        }
    }
}

use super::output::csv_field;

pub fn run(cmd: FlowLogsCommand) -> Result<()> {
    let FlowLogsCommand::Read(a) = cmd;
    // Files named on the command line are read whatever their name; inside
    // directories only `*.json` and `*.ndjson`.
    let files = netwatch::files::collect(&a.paths, &["json", "ndjson"])?;
    let mut out = BufWriter::new(io::stdout().lock());
    let (mut records, mut tuple_count) = (0usize, 0usize);
    let mut table: Vec<Vec<String>> = vec![COLUMNS.iter().map(|c| c.to_string()).collect()];
    if !a.summary && a.output == FlowFormat::Csv {
        writeln!(out, "{}", COLUMNS.join(","))?;
    }
    let mut err: Option<io::Error> = None;
    for f in &files {
        let file = read_file(f)?;
        for rec in &file.records {
            records += 1;
            tuples(rec, |t| {
                tuple_count += 1;
                if a.summary || err.is_some() {
                    return;
                }
                let res = match a.output {
                    FlowFormat::Jsonl => serde_json::to_writer(&mut out, &t.json)
                        .map_err(io::Error::from)
                        .and_then(|()| out.write_all(b"\n")),
                    FlowFormat::Csv => {
                        let line: Vec<String> = t.cells.iter().map(|c| csv_field(c).into_owned()).collect();
                        writeln!(out, "{}", line.join(","))
                    }
                    FlowFormat::Table => {
                        table.push(t.cells);
                        Ok(())
                    }
                };
                if let Err(e) = res {
                    err = Some(e);
                }
            });
            if let Some(e) = err.take() {
                return Err(e.into());
            }
        }
    }
    let counts = format!("{} file(s), {records} record(s), {tuple_count} tuple(s)", files.len());
    if a.summary {
        // The count is what was asked for: on stdout.
        writeln!(out, "{counts}")?;
    } else {
        if a.output == FlowFormat::Table {
            write_columns(&mut out, &table)?;
        }
        eprintln!("{counts}");
    }
    out.flush()?;
    Ok(())
}
