//! Printing values: Azure-shaped JSON, JSON lines, or a table for people.

use std::io::{self, Write};

use anyhow::Result;
use clap::ValueEnum;
use serde_json::Value;

/// `-o json|jsonl|table|csv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Azure's response shape, pretty-printed.
    Json,
    /// One JSON object per line (the elements of the response's main list).
    Jsonl,
    /// Aligned columns for people.
    Table,
    /// The table's rows and columns as CSV (RFC 4180), cells in full.
    Csv,
}

/// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Prints a response in the chosen format.
pub fn print_value(v: &Value, format: OutputFormat) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, v)?;
            writeln!(out)?;
        }
        OutputFormat::Jsonl => {
            for element in main_list(v) {
                serde_json::to_writer(&mut out, element)?;
                writeln!(out)?;
            }
        }
        OutputFormat::Table => write_table(&mut out, &rows(v))?,
        OutputFormat::Csv => write_csv(&mut out, &rows(v))?,
    }
    out.flush()?;
    Ok(())
}

/// The elements of a response's main list, as Azure writes them (`value`,
/// `networkInterfaces`, `resources`, `hops`), or the response itself.
fn main_list(v: &Value) -> Vec<&Value> {
    ["value", "networkInterfaces", "resources", "hops"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_array))
        .map_or_else(|| vec![v], |list| list.iter().collect())
}

/// The rows of a table: the elements of a response's main list, flattened
/// for people (one row per rule, association or hop), or the response.
fn rows(v: &Value) -> Vec<Value> {
    if let Some(nsgs) = v.get("evaluatedNetworkSecurityGroups").and_then(Value::as_array) {
        // IP flow verify's trace: one row per rule evaluated, NSG by NSG,
        // and which rule decided each NSG.
        let mut out = Vec::new();
        for g in nsgs {
            let id = |k: &str| g.get(k).and_then(Value::as_str).map(short).unwrap_or_default();
            let decided = g.pointer("/matchedRule/ruleName").and_then(Value::as_str);
            let action = g.pointer("/matchedRule/action").cloned().unwrap_or(Value::Null);
            for r in g.get("rulesEvaluationResult").and_then(Value::as_array).into_iter().flatten() {
                let name = r.get("name").and_then(Value::as_str);
                let matched = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
                out.push(serde_json::json!({
                    "nsg": id("networkSecurityGroupId"),
                    "appliedTo": id("appliedTo"),
                    "rule": name,
                    "rulePriority": r.get("priority"),
                    "protocolMatched": matched("protocolMatched"),
                    "sourceMatched": matched("sourceMatched"),
                    "sourcePortMatched": matched("sourcePortMatched"),
                    "destinationMatched": matched("destinationMatched"),
                    "destinationPortMatched": matched("destinationPortMatched"),
                    "decision": if name.is_some() && name == decided { action.clone() } else { Value::Null },
                }));
            }
        }
        return out;
    }
    if let Some(candidates) = v.get("candidates").and_then(Value::as_array) {
        // Next hop's trace: one row per candidate route and why it won or lost.
        return candidates
            .iter()
            .map(|c| {
                let route = |k: &str| c.pointer(&format!("/route/{k}")).cloned().unwrap_or(Value::Null);
                let outcome = c.get("outcome").and_then(Value::as_object).map(|o| {
                    let mut words: Vec<String> = o.get("outcome").map(cell).into_iter().collect();
                    words.extend(o.iter().filter(|(k, _)| *k != "outcome").map(|(k, v)| format!("{k}={}", cell(v))));
                    words.join(" ")
                });
                serde_json::json!({
                    "routeName": route("name"),
                    "source": route("source"),
                    "state": route("state"),
                    "addressPrefix": route("addressPrefix"),
                    "nextHopType": route("nextHopType"),
                    "nextHopIpAddress": route("nextHopIpAddress"),
                    "outcome": outcome,
                })
            })
            .collect();
    }
    if let Some(list) = v.get("value").and_then(Value::as_array) {
        // Effective security rules: one row per rule, with its NSG.
        let mut out = Vec::new();
        for g in list {
            match g.get("effectiveSecurityRules").and_then(Value::as_array) {
                Some(rules) => {
                    let nsg = g
                        .pointer("/networkSecurityGroup/id")
                        .and_then(Value::as_str)
                        .map(short)
                        .unwrap_or_default();
                    for r in rules {
                        let mut r = r.clone();
                        if let Some(o) = r.as_object_mut() {
                            o.insert("nsg".into(), Value::String(nsg.clone()));
                        }
                        out.push(r);
                    }
                }
                None => out.push(g.clone()),
            }
        }
        return out;
    }
    if let Some(nics) = v.get("networkInterfaces").and_then(Value::as_array) {
        let mut out = Vec::new();
        for n in nics {
            let nic = n.get("id").and_then(Value::as_str).map(short).unwrap_or_default();
            for r in n
                .pointer("/securityRuleAssociations/effectiveSecurityRules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.insert("nic".into(), Value::String(nic.clone()));
                }
                out.push(r);
            }
        }
        return out;
    }
    if let Some(hops) = v.get("hops").and_then(Value::as_array) {
        // Connectivity check: one row per hop, its issues in words.
        let status = v.get("connectionStatus").cloned().unwrap_or(Value::Null);
        return hops
            .iter()
            .map(|h| {
                let nic = h.get("resourceId").and_then(Value::as_str).map(|id| {
                    netwatch::azure::id_part(id, "networkInterfaces")
                        .map(str::to_string)
                        .unwrap_or_else(|| short(id))
                });
                let issues: Vec<String> = h
                    .get("issues")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        let field = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                        let context: Vec<String> = i
                            .get("context")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|c| Some((c.get("key")?.as_str()?, c.get("value")?)))
                            .filter(|(k, _)| *k != "NetworkSecurityGroupId" && *k != "RouteTableId")
                            .map(|(k, v)| format!("{k}={}", cell(v)))
                            .collect();
                        format!("{} {} {}: {}", field("severity"), field("origin"), field("type"), context.join(" "))
                    })
                    .collect();
                serde_json::json!({
                    "type": h.get("type"),
                    "address": h.get("address"),
                    "nic": nic,
                    "issues": issues.join("; "),
                    "connectionStatus": status,
                })
            })
            .collect();
    }
    if let Some(resources) = v.get("resources").and_then(Value::as_array) {
        // Topology: one row per association (a resource without any: one
        // row of its own).
        let mut out = Vec::new();
        for r in resources {
            let base = |a: Option<&Value>| {
                serde_json::json!({
                    "resource": r.get("name"),
                    "type": r.get("id").and_then(Value::as_str).map(resource_type),
                    "location": r.get("location"),
                    "associationType": a.and_then(|a| a.get("associationType")),
                    "associated": a.and_then(|a| a.get("name")),
                })
            };
            match r.get("associations").and_then(Value::as_array) {
                Some(list) if !list.is_empty() => out.extend(list.iter().map(|a| base(Some(a)))),
                _ => out.push(base(None)),
            }
        }
        return out;
    }
    vec![v.clone()]
}

/// `virtualNetworks/subnets` from `.../providers/Microsoft.Network/virtualNetworks/v/subnets/s`.
fn resource_type(id: &str) -> String {
    let Some((_, rest)) = id.split_once("/providers/") else {
        return String::new();
    };
    let parts: Vec<&str> = rest.split('/').collect();
    // Namespace, then type/name pairs.
    parts.iter().skip(1).step_by(2).copied().collect::<Vec<_>>().join("/")
}

fn short(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        // Resource ids (ASGs in rules) read better by name.
        Value::String(s) if s.starts_with("/subscriptions/") => short(s),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(cell).collect();
            let s = parts.join(",");
            if s.len() > 48 {
                format!(
                    "{}… ({} items)",
                    &s[..s.char_indices().take(40).last().map_or(0, |(i, c)| i + c.len_utf8())],
                    a.len()
                )
            } else {
                s
            }
        }
        Value::Object(_) => "{…}".into(),
        other => other.to_string(),
    }
}

/// Columns chosen for effective rules; other shapes use their own keys.
const RULE_COLUMNS: &[(&str, &str)] = &[
    ("nsg", "NSG"),
    ("nic", "NIC"),
    ("name", "Name"),
    ("priority", "Priority"),
    ("direction", "Direction"),
    ("access", "Access"),
    ("protocol", "Protocol"),
    ("sourceAddressPrefixes", "Source"),
    ("sourcePortRanges", "SourcePorts"),
    ("destinationAddressPrefixes", "Destination"),
    ("destinationPortRanges", "DestinationPorts"),
];

/// The columns of a table or CSV: the chosen ones for effective rules, the
/// first row's keys (not objects) for other shapes.
fn columns(rows: &[Value]) -> Vec<(String, String)> {
    let Some(first) = rows.first() else { return Vec::new() };
    if first.get("priority").is_some() {
        RULE_COLUMNS
            .iter()
            .filter(|(k, _)| rows.iter().any(|r| r.get(*k).is_some()))
            .map(|(k, h)| (k.to_string(), h.to_string()))
            .collect()
    } else {
        first
            .as_object()
            .map(|o| o.keys().filter(|k| !o[*k].is_object()).map(|k| (k.clone(), title(k))).collect())
            .unwrap_or_default()
    }
}

fn write_table(out: &mut impl Write, rows: &[Value]) -> Result<()> {
    let cols = columns(rows);
    if cols.is_empty() {
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(k, _)| r.get(k).map(cell).unwrap_or_default()).collect())
        .collect();
    let mut all: Vec<Vec<String>> = vec![cols.iter().map(|(_, h)| h.clone()).collect()];
    all.extend(cells);
    Ok(super::flows::write_columns(out, &all)?)
}

/// The table's rows as CSV: a header, then one line per row, every cell in
/// full (lists joined by `,` inside one quoted field, ids not shortened:
/// CSV is for programs).
fn write_csv(out: &mut impl Write, rows: &[Value]) -> Result<()> {
    let cols = columns(rows);
    if cols.is_empty() {
        return Ok(());
    }
    let line = |cells: Vec<String>| cells.iter().map(|c| csv_field(c).into_owned()).collect::<Vec<_>>().join(",");
    writeln!(out, "{}", line(cols.iter().map(|(_, h)| h.clone()).collect()))?;
    for r in rows {
        writeln!(
            out,
            "{}",
            line(cols.iter().map(|(k, _)| r.get(k).map(full_cell).unwrap_or_default()).collect())
        )?;
    }
    Ok(())
}

/// A CSV cell: the value in full.
fn full_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(full_cell).collect::<Vec<_>>().join(","),
        Value::Object(_) => v.to_string(),
        other => other.to_string(),
    }
}

/// `s` padded with spaces to `width` terminal columns (wide characters,
/// CJK and most emoji, take two).
pub fn pad(s: &str, width: usize) -> String {
    let w = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// Terminal columns `s` takes.
pub fn display_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `ruleName` -> `RuleName`; `nsg` -> `NSG`.
fn title(k: &str) -> String {
    if matches!(k, "nsg" | "nic") {
        return k.to_ascii_uppercase();
    }
    let mut c = k.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn wide_characters_take_two_columns() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["Name".to_string(), "Next".to_string()],
            vec!["vm-wéb2-网络".to_string(), "x".to_string()],
            vec!["vm-a".to_string(), "y".to_string()],
        ];
        crate::cli::flows::write_columns(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        // "vm-wéb2-网络" is 12 columns wide: every second column starts at 14.
        let starts: Vec<usize> = text
            .lines()
            .map(|l| super::display_width(&l[..l.rfind(' ').unwrap() + 1]))
            .collect();
        assert_eq!(starts, vec![14, 14, 14], "{text}");
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("nsg-web"), "nsg-web");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
