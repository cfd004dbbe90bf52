//! `netwatch flow-logs read`: NSG (v1, v2) and VNet (v4) flow-log files,
//! Azure's or ours, as one JSON object per tuple.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use netwatch_flowlogs::{read_file, FlowLogRecord};
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum FlowLogsCommand {
    /// Read flow-log files (a file, or a directory searched for *.json / *.ndjson) and print every tuple as JSON lines.
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
}

pub fn run(cmd: FlowLogsCommand) -> Result<()> {
    let FlowLogsCommand::Read(a) = cmd;
    // Files named on the command line are read whatever their name; inside
    // directories only `*.json` and `*.ndjson`.
    let files = netwatch::files::collect(&a.paths, &["json", "ndjson"])?;
    let mut out = BufWriter::new(io::stdout().lock());
    let (mut records, mut tuples) = (0usize, 0usize);
    for f in &files {
        let file = read_file(f)?;
        for rec in &file.records {
            records += 1;
            match rec {
                FlowLogRecord::Nsg(r) => {
                    for (rule, mac, t) in r.tuples() {
                        tuples += 1;
                        if a.summary {
                            continue;
                        }
                        let c = t.counters;
                        let v = json!({
                            "format": format!("NSG v{}", r.version),
                            "time": r.time, "resourceId": r.resource_id, "rule": rule, "mac": mac,
                            "timestamp": t.time_s, "source": t.src, "destination": t.dst,
                            "sourcePort": t.src_port, "destinationPort": t.dst_port,
                            "protocol": t.protocol.number(), "direction": t.direction.as_str(), "decision": t.decision.as_str(),
                            "state": t.state.map(|s| s.letter().to_string()),
                            "packetsSourceToDestination": c.map(|c| c.packets_src_to_dst), "bytesSourceToDestination": c.map(|c| c.bytes_src_to_dst),
                            "packetsDestinationToSource": c.map(|c| c.packets_dst_to_src), "bytesDestinationToSource": c.map(|c| c.bytes_dst_to_src),
                        });
                        serde_json::to_writer(&mut out, &v)?;
                        out.write_all(b"\n")?;
                    }
                }
                FlowLogRecord::Vnet(r) => {
                    for (acl, rule, t) in r.tuples() {
                        tuples += 1;
                        if a.summary {
                            continue;
                        }
                        let c = t.counters;
                        let v = json!({
                            "format": format!("VNet v{}", r.flow_log_version),
                            "time": r.time, "flowLogResourceID": r.flow_log_resource_id, "targetResourceID": r.target_resource_id,
                            "aclID": acl, "rule": rule, "mac": r.mac_address,
                            "timestampMs": t.time_ms, "source": t.src, "destination": t.dst,
                            "sourcePort": t.src_port, "destinationPort": t.dst_port,
                            "protocol": t.protocol, "direction": t.direction.as_str(), "state": t.state.letter().to_string(),
                            "encryption": t.encryption.as_str(),
                            "packetsSent": c.map(|c| c.packets_src_to_dst), "bytesSent": c.map(|c| c.bytes_src_to_dst),
                            "packetsReceived": c.map(|c| c.packets_dst_to_src), "bytesReceived": c.map(|c| c.bytes_dst_to_src),
                        });
                        serde_json::to_writer(&mut out, &v)?;
                        out.write_all(b"\n")?;
                    }
                }
            }
        }
    }
    let counts = format!("{} file(s), {records} record(s), {tuples} tuple(s)", files.len());
    if a.summary {
        // The count is what was asked for: on stdout.
        writeln!(out, "{counts}")?;
    } else {
        eprintln!("{counts}");
    }
    out.flush()?;
    Ok(())
}
