//! Flow-log tuples: the comma-separated strings inside `flowTuples`.
//!
//! - NSG flow logs (spec §7.1): v1 has 8 fields
//!   `time_s,src,dst,sport,dport,T|U,I|O,A|D`; v2 adds
//!   `B|C|E,pkts s→d,bytes s→d,pkts d→s,bytes d→s` (13 fields), with the
//!   counters empty on `B` (`...,B,,,,`).
//! - VNet flow logs (spec §7.3): 13 fields
//!   `time_ms,src,dst,sport,dport,proto#,I|O,B|C|E|D,encryption,pkts sent,bytes sent,pkts received,bytes received`;
//!   `B` and `D` carry `0,0,0,0` in the sample.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use netwatch_rules::{Access, Direction};
use thiserror::Error;

/// A tuple field that does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TupleError {
    #[error("{found} comma-separated fields, expected {expected}")]
    Arity { found: usize, expected: &'static str },
    #[error("field {index} ({name}) is {value:?}, expected {expected}")]
    Field {
        index: usize,
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

fn field<T: FromStr>(parts: &[&str], index: usize, name: &'static str, expected: &'static str) -> Result<T, TupleError> {
    let value = parts.get(index).copied().unwrap_or("");
    // Rust's integer parsers take a sign; Azure writes none (and no field
    // here, address or number, starts with one).
    if value.starts_with(['+', '-']) {
        return Err(bad(parts, index, name, expected));
    }
    value.parse().map_err(|_| TupleError::Field {
        index: index + 1,
        name,
        value: value.to_string(),
        expected,
    })
}

/// Adds a tuple's text to a rule's list, in time order (the leading
/// field), after those of the same time: Azure's records list each rule's
/// tuples by time, while flows end out of their start order.
pub(crate) fn insert_by_time(tuples: &mut Vec<String>, text: String) {
    let time = |t: &str| t.split(',').next().and_then(|f| f.parse::<i64>().ok()).unwrap_or(i64::MIN);
    let t = time(&text);
    let at = tuples.partition_point(|x| time(x) <= t);
    tuples.insert(at, text);
}

fn bad(parts: &[&str], index: usize, name: &'static str, expected: &'static str) -> TupleError {
    TupleError::Field {
        index: index + 1,
        name,
        value: parts.get(index).copied().unwrap_or("").to_string(),
        expected,
    }
}

/// Packet and byte deltas of a `C`/`E` tuple, source → destination and
/// destination → source (spec §7.1 fields 10–13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TupleCounters {
    pub packets_src_to_dst: u64,
    pub bytes_src_to_dst: u64,
    pub packets_dst_to_src: u64,
    pub bytes_dst_to_src: u64,
}

impl std::ops::Add for TupleCounters {
    type Output = TupleCounters;

    /// Field-wise sum, saturating (counters can come from files read back).
    fn add(self, o: TupleCounters) -> TupleCounters {
        TupleCounters {
            packets_src_to_dst: self.packets_src_to_dst.saturating_add(o.packets_src_to_dst),
            bytes_src_to_dst: self.bytes_src_to_dst.saturating_add(o.bytes_src_to_dst),
            packets_dst_to_src: self.packets_dst_to_src.saturating_add(o.packets_dst_to_src),
            bytes_dst_to_src: self.bytes_dst_to_src.saturating_add(o.bytes_dst_to_src),
        }
    }
}

impl TupleCounters {
    /// Parses fields 10–13: `None` when all four are empty, `Some` when all
    /// four are numbers.
    fn parse(parts: &[&str]) -> Result<Option<TupleCounters>, TupleError> {
        let names = ["packets src→dst", "bytes src→dst", "packets dst→src", "bytes dst→src"];
        if parts[9..13].iter().all(|p| p.is_empty()) {
            return Ok(None);
        }
        let mut v = [0u64; 4];
        for (i, slot) in v.iter_mut().enumerate() {
            *slot = field(parts, 9 + i, names[i], "a count, or all four counters empty")?;
        }
        Ok(Some(TupleCounters {
            packets_src_to_dst: v[0],
            bytes_src_to_dst: v[1],
            packets_dst_to_src: v[2],
            bytes_dst_to_src: v[3],
        }))
    }
}

/// Flow state letter of an NSG v2 tuple (spec §7.1 field 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NsgFlowState {
    /// `B`: the flow was created; no counters.
    Begin,
    /// `C`: the flow continues; counters since the previous tuple (every 5 minutes).
    Continuing,
    /// `E`: the flow ended; the remaining counters.
    End,
}

impl NsgFlowState {
    pub fn letter(self) -> char {
        match self {
            NsgFlowState::Begin => 'B',
            NsgFlowState::Continuing => 'C',
            NsgFlowState::End => 'E',
        }
    }
}

/// Protocol letter of an NSG tuple: NSG flow logs record only TCP and UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NsgProtocol {
    /// `T`
    Tcp,
    /// `U`
    Udp,
}

impl NsgProtocol {
    /// From an IANA protocol number; `None` for anything but 6 and 17.
    pub fn from_number(p: u8) -> Option<Self> {
        match p {
            6 => Some(NsgProtocol::Tcp),
            17 => Some(NsgProtocol::Udp),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            NsgProtocol::Tcp => 6,
            NsgProtocol::Udp => 17,
        }
    }

    pub fn letter(self) -> char {
        match self {
            NsgProtocol::Tcp => 'T',
            NsgProtocol::Udp => 'U',
        }
    }
}

fn direction_letter(d: Direction) -> char {
    match d {
        Direction::Inbound => 'I',
        Direction::Outbound => 'O',
    }
}

fn parse_direction(parts: &[&str], index: usize) -> Result<Direction, TupleError> {
    match parts.get(index).copied() {
        Some("I") => Ok(Direction::Inbound),
        Some("O") => Ok(Direction::Outbound),
        _ => Err(bad(parts, index, "direction", "I or O")),
    }
}

/// One NSG flow-log tuple, v1 (`state: None`) or v2 (spec §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NsgFlowTuple {
    /// Unix epoch seconds.
    pub time_s: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: NsgProtocol,
    pub direction: Direction,
    pub decision: Access,
    /// `None` for a v1 tuple (8 fields).
    pub state: Option<NsgFlowState>,
    /// `None` for v1 tuples and for v2 tuples with empty counters (`B`).
    pub counters: Option<TupleCounters>,
}

impl fmt::Display for NsgFlowTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{},{},{},{}",
            self.time_s,
            self.src,
            self.dst,
            self.src_port,
            self.dst_port,
            self.protocol.letter(),
            direction_letter(self.direction),
            match self.decision {
                Access::Allow => 'A',
                Access::Deny => 'D',
            }
        )?;
        if let Some(state) = self.state {
            write!(f, ",{}", state.letter())?;
            match self.counters {
                Some(c) => write!(
                    f,
                    ",{},{},{},{}",
                    c.packets_src_to_dst, c.bytes_src_to_dst, c.packets_dst_to_src, c.bytes_dst_to_src
                )?,
                None => f.write_str(",,,,")?,
            }
        }
        Ok(())
    }
}

impl FromStr for NsgFlowTuple {
    type Err = TupleError;

    fn from_str(s: &str) -> Result<Self, TupleError> {
        let parts: Vec<&str> = s.split(',').collect();
        if parts.len() != 8 && parts.len() != 13 {
            return Err(TupleError::Arity {
                found: parts.len(),
                expected: "8 (v1) or 13 (v2)",
            });
        }
        let protocol = match parts[5] {
            "T" => NsgProtocol::Tcp,
            "U" => NsgProtocol::Udp,
            _ => return Err(bad(&parts, 5, "protocol", "T or U")),
        };
        let decision = match parts[7] {
            "A" => Access::Allow,
            "D" => Access::Deny,
            _ => return Err(bad(&parts, 7, "decision", "A or D")),
        };
        let (state, counters) = if parts.len() == 13 {
            let state = match parts[8] {
                "B" => NsgFlowState::Begin,
                "C" => NsgFlowState::Continuing,
                "E" => NsgFlowState::End,
                _ => return Err(bad(&parts, 8, "flow state", "B, C or E")),
            };
            let counters = TupleCounters::parse(&parts)?;
            // Spec §7.1: B tuples leave the counters empty, C and E carry
            // them, and denied flows appear as B only.
            match (state, counters.is_some()) {
                (NsgFlowState::Begin, true) => return Err(bad(&parts, 9, "packets src→dst", "empty: a B tuple carries no counters")),
                (NsgFlowState::Continuing | NsgFlowState::End, false) => {
                    return Err(bad(&parts, 9, "packets src→dst", "a count: C and E tuples carry counters"))
                }
                _ => {}
            }
            if decision == Access::Deny && state != NsgFlowState::Begin {
                return Err(bad(&parts, 8, "flow state", "B: a denied flow is logged as B only"));
            }
            (Some(state), counters)
        } else {
            (None, None)
        };
        Ok(NsgFlowTuple {
            time_s: field(&parts, 0, "time stamp", "Unix epoch seconds")?,
            src: field(&parts, 1, "source IP", "an IP address")?,
            dst: field(&parts, 2, "destination IP", "an IP address")?,
            src_port: field(&parts, 3, "source port", "a port 0-65535")?,
            dst_port: field(&parts, 4, "destination port", "a port 0-65535")?,
            protocol,
            direction: parse_direction(&parts, 6)?,
            decision,
            state,
            counters,
        })
    }
}

/// Flow state letter of a VNet tuple (spec §7.3 field 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VnetFlowState {
    /// `B`: allowed flow created.
    Begin,
    /// `C`: allowed flow continuing.
    Continuing,
    /// `E`: allowed flow ended.
    End,
    /// `D`: denied (there is no separate decision field).
    Denied,
}

impl VnetFlowState {
    pub fn letter(self) -> char {
        match self {
            VnetFlowState::Begin => 'B',
            VnetFlowState::Continuing => 'C',
            VnetFlowState::End => 'E',
            VnetFlowState::Denied => 'D',
        }
    }
}

/// Encryption state of a VNet tuple (spec §7.3 field 9). netwatch writes
/// `NX` (not encrypted), the default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// `X`
    Encrypted,
    /// `NX`
    NotEncrypted,
    /// Any `NX_*` reason (kept verbatim).
    Other(String),
}

impl Encryption {
    pub fn as_str(&self) -> &str {
        match self {
            Encryption::Encrypted => "X",
            Encryption::NotEncrypted => "NX",
            Encryption::Other(s) => s,
        }
    }
}

/// One VNet flow-log tuple (spec §7.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VnetFlowTuple {
    /// Unix epoch milliseconds.
    pub time_ms: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IANA protocol number.
    pub protocol: u8,
    pub direction: Direction,
    pub state: VnetFlowState,
    pub encryption: Encryption,
    /// `None` when the four counters are empty (the doc's bandwidth
    /// example); the sample writes `0,0,0,0` on `B`/`D`.
    pub counters: Option<TupleCounters>,
}

impl fmt::Display for VnetFlowTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.counters.unwrap_or_default();
        write!(
            f,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.time_ms,
            self.src,
            self.dst,
            self.src_port,
            self.dst_port,
            self.protocol,
            direction_letter(self.direction),
            self.state.letter(),
            self.encryption.as_str(),
            c.packets_src_to_dst,
            c.bytes_src_to_dst,
            c.packets_dst_to_src,
            c.bytes_dst_to_src
        )
    }
}

impl FromStr for VnetFlowTuple {
    type Err = TupleError;

    fn from_str(s: &str) -> Result<Self, TupleError> {
        let parts: Vec<&str> = s.split(',').collect();
        if parts.len() != 13 {
            return Err(TupleError::Arity {
                found: parts.len(),
                expected: "13",
            });
        }
        let state = match parts[7] {
            "B" => VnetFlowState::Begin,
            "C" => VnetFlowState::Continuing,
            "E" => VnetFlowState::End,
            "D" => VnetFlowState::Denied,
            _ => return Err(bad(&parts, 7, "flow state", "B, C, E or D")),
        };
        let encryption = match parts[8] {
            "X" => Encryption::Encrypted,
            "NX" => Encryption::NotEncrypted,
            // The reasons of spec §7.3.
            other @ ("NX_HW_NOT_SUPPORTED"
            | "NX_SW_NOT_READY"
            | "NX_NOT_ACCEPTED"
            | "NX_NOT_SUPPORTED"
            | "NX_LOCAL_DST"
            | "NX_FALLBACK") => Encryption::Other(other.to_string()),
            _ => {
                return Err(bad(
                    &parts,
                    8,
                    "encryption",
                    "X, NX, NX_HW_NOT_SUPPORTED, NX_SW_NOT_READY, NX_NOT_ACCEPTED, NX_NOT_SUPPORTED, NX_LOCAL_DST or NX_FALLBACK",
                ))
            }
        };
        Ok(VnetFlowTuple {
            time_ms: field(&parts, 0, "time stamp", "Unix epoch milliseconds")?,
            src: field(&parts, 1, "source IP", "an IP address")?,
            dst: field(&parts, 2, "destination IP", "an IP address")?,
            src_port: field(&parts, 3, "source port", "a port 0-65535")?,
            dst_port: field(&parts, 4, "destination port", "a port 0-65535")?,
            protocol: field(&parts, 5, "protocol", "an IANA protocol number 0-255")?,
            direction: parse_direction(&parts, 6)?,
            state,
            encryption,
            counters: TupleCounters::parse(&parts)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsg_round_trip() {
        for s in [
            "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,D,B,,,,",
            "1542110379,10.5.16.4,13.67.143.115,44931,443,T,O,A,C,30,16978,24,14008",
            "1487282421,42.119.146.95,10.1.0.4,51529,5358,T,I,D",
            "1542110379,2001:db8::1,2001:db8::2,1,2,T,O,A,E,1,66,1,66",
        ] {
            let t: NsgFlowTuple = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn nsg_errors_name_the_field() {
        let e = "1542110402,94.102.49.190,10.5.16.4,28746,443,X,I,D,B,,,,"
            .parse::<NsgFlowTuple>()
            .unwrap_err();
        assert!(e.to_string().contains("field 6 (protocol)"), "{e}");
        let e = "1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,D,C,1,,2,3"
            .parse::<NsgFlowTuple>()
            .unwrap_err();
        assert!(e.to_string().contains("field 11"), "{e}");
        let e = "1,2,3".parse::<NsgFlowTuple>().unwrap_err();
        assert!(matches!(e, TupleError::Arity { found: 3, .. }));
        let e = "1542110402,94.102.49.300,10.5.16.4,28746,443,T,I,D"
            .parse::<NsgFlowTuple>()
            .unwrap_err();
        assert!(e.to_string().contains("source IP"), "{e}");
    }

    #[test]
    fn vnet_round_trip() {
        for s in [
            "1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,NX,0,0,0,0",
            "1663146003606,10.0.0.6,52.239.184.180,23956,443,6,O,E,NX,3,767,2,1580",
            "1663145998065,101.33.218.153,10.0.0.6,55188,22,6,I,D,NX,0,0,0,0",
            "1663145998065,10.0.0.5,10.0.0.6,0,0,1,I,C,NX_LOCAL_DST,1,84,1,84",
        ] {
            let t: VnetFlowTuple = s.parse().unwrap();
            assert_eq!(t.to_string(), s);
        }
        let e = "1663146003599,10.0.0.6,52.239.184.180,23956,443,256,O,B,NX,0,0,0,0"
            .parse::<VnetFlowTuple>()
            .unwrap_err();
        assert!(e.to_string().contains("field 6 (protocol)"), "{e}");
        // Spec §7.3's encryption values only.
        for bad in ["NX_", "NX_WHATEVER", "nx"] {
            let s = format!("1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,{bad},0,0,0,0");
            let e = s.parse::<VnetFlowTuple>().unwrap_err();
            assert!(e.to_string().contains("field 9 (encryption)"), "{e}");
        }
    }

    /// What Azure never writes in a v2 tuple is an error naming the field:
    /// counters on B, none on C/E, a denied flow past B, signed numbers.
    #[test]
    fn nsg_v2_state_rules() {
        for (s, field) in [
            ("1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,A,B,1,2,3,4", "field 10"),
            ("1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,A,E,,,,", "field 10"),
            ("1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,A,C,,,,", "field 10"),
            (
                "1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,D,C,1,2,3,4",
                "field 9 (flow state)",
            ),
            (
                "1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,D,E,1,2,3,4",
                "field 9 (flow state)",
            ),
            ("+1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,D,B,,,,", "field 1"),
            ("1542110402,94.102.49.190,10.5.16.4,+28746,443,T,I,D,B,,,,", "field 4"),
            ("1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,A,E,1,2,-3,4", "field 12"),
        ] {
            let e = s.parse::<NsgFlowTuple>().unwrap_err();
            assert!(e.to_string().contains(field), "{s}: {e}");
        }
        // And what it writes still reads.
        for s in [
            "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,D,B,,,,",
            "1542110402,94.102.49.190,10.5.16.4,28746,443,T,I,A,C,1,2,3,4",
        ] {
            assert_eq!(s.parse::<NsgFlowTuple>().unwrap().to_string(), s);
        }
    }
}
