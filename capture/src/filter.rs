//! Network Watcher packet-capture filters (`PacketCaptureFilter`, spec §8.2)
//! and their compilation to ONE tcpdump / BPF expression, so that the kernel
//! drops unwanted packets before they are copied to user space.
//!
//! Semantics (spec "Decisions" 9): several filters are OR'd, the fields inside
//! one filter are AND'd, an absent field matches anything.
//!
//! * `protocol`: `TCP` → `tcp`, `UDP` → `udp`, `Any` (the default; the portal's
//!   "All") → no protocol restriction at all: like Network Watcher, `Any`
//!   captures everything (ICMP, ARP, ... included) unless a port is given, and a
//!   port qualifier in tcpdump syntax already means TCP, UDP or SCTP.
//! * `localIPAddress` / `remoteIPAddress`: `a` (single), `a-b` (range; split into
//!   the minimal set of CIDR blocks) or `a;b;` (list).
//! * `localPort` / `remotePort`: `80`, `80-85` (`portrange`), `80;443;`.
//! * "local" is the filter's `localIPAddress`; when the filter has none but
//!   needs a direction (it names a remote address or a port), the local
//!   addresses of the capture (the interface's own addresses, or those the user
//!   gives) stand for it. Each filter matches both directions: outgoing
//!   (source = local) and incoming (destination = local), e.g.
//!   `{localIPAddress=A, remotePort=80}` →
//!   `((src host A and dst port 80) or (dst host A and src port 80))`.
use std::fmt;
use std::net::IpAddr;

/// `protocol` of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    Tcp,
    Udp,
    /// Everything (Network Watcher's default).
    #[default]
    Any,
}

impl Protocol {
    /// `TCP`, `UDP`, `Any` (or the portal's `All`), case-insensitively.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "any" | "all" | "*" => Ok(Protocol::Any),
            _ => Err(format!("\"{s}\" is not a protocol: TCP, UDP or Any")),
        }
    }

    /// The spelling Network Watcher uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Any => "Any",
        }
    }
}

/// An address field: single address, inclusive range or list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpMatch {
    Single(IpAddr),
    Range(IpAddr, IpAddr),
    List(Vec<IpAddr>),
}

/// A port field: single port, inclusive range or list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    Single(u16),
    Range(u16, u16),
    List(Vec<u16>),
}

/// One `PacketCaptureFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptureFilter {
    pub protocol: Protocol,
    pub local_ip: Option<IpMatch>,
    pub remote_ip: Option<IpMatch>,
    pub local_port: Option<PortMatch>,
    pub remote_port: Option<PortMatch>,
}

/// A filter that does not parse; `token` is the offending `key=value` item
/// (text form) or field name (JSON form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub token: Option<String>,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.token {
            Some(t) => write!(f, "\"{t}\": {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FilterError {}

/// The field names, lower-cased, with the aliases accepted on the command line.
fn field_of(key: &str) -> Option<Field> {
    match key.trim().to_ascii_lowercase().as_str() {
        "protocol" | "proto" => Some(Field::Protocol),
        "localipaddress" | "localip" => Some(Field::LocalIp),
        "remoteipaddress" | "remoteip" => Some(Field::RemoteIp),
        "localport" => Some(Field::LocalPort),
        "remoteport" => Some(Field::RemotePort),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Protocol,
    LocalIp,
    RemoteIp,
    LocalPort,
    RemotePort,
}

const FIELDS: &str = "protocol, localIPAddress, remoteIPAddress, localPort or remotePort";

impl CaptureFilter {
    /// The command-line form: `protocol=TCP,localIPAddress=10.0.0.3,remotePort=80;443`.
    /// Keys are case-insensitive; an empty text is the filter that matches everything.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let mut f = CaptureFilter::default();
        let mut seen: Vec<Field> = Vec::new();
        for item in text.split(',') {
            if item.trim().is_empty() {
                continue;
            }
            let tok = || Some(item.trim().to_string());
            let Some((k, v)) = item.split_once('=') else {
                return Err(FilterError {
                    token: tok(),
                    message: format!("expected key=value with key {FIELDS}"),
                });
            };
            let Some(field) = field_of(k) else {
                return Err(FilterError {
                    token: tok(),
                    message: format!("unknown field \"{}\"; expected {FIELDS}", k.trim()),
                });
            };
            if seen.contains(&field) {
                return Err(FilterError {
                    token: tok(),
                    message: format!("field \"{}\" given twice", k.trim()),
                });
            }
            seen.push(field);
            f.set(field, v).map_err(|message| FilterError { token: tok(), message })?;
        }
        Ok(f)
    }

    /// The JSON form's fields (`PacketCaptureFilter`), each `None` when absent.
    pub fn from_fields(
        protocol: Option<&str>,
        local_ip: Option<&str>,
        remote_ip: Option<&str>,
        local_port: Option<&str>,
        remote_port: Option<&str>,
    ) -> Result<Self, FilterError> {
        let mut f = CaptureFilter::default();
        for (field, name, v) in [
            (Field::Protocol, "protocol", protocol),
            (Field::LocalIp, "localIPAddress", local_ip),
            (Field::RemoteIp, "remoteIPAddress", remote_ip),
            (Field::LocalPort, "localPort", local_port),
            (Field::RemotePort, "remotePort", remote_port),
        ] {
            if let Some(v) = v {
                f.set(field, v).map_err(|message| FilterError {
                    token: Some(name.to_string()),
                    message,
                })?;
            }
        }
        Ok(f)
    }

    /// Whether a JSON key names a filter field (case-insensitively), and which
    /// canonical name it has; for callers that read the JSON form.
    pub fn canonical_field(key: &str) -> Option<&'static str> {
        field_of(key).map(|f| match f {
            Field::Protocol => "protocol",
            Field::LocalIp => "localIPAddress",
            Field::RemoteIp => "remoteIPAddress",
            Field::LocalPort => "localPort",
            Field::RemotePort => "remotePort",
        })
    }

    fn set(&mut self, field: Field, v: &str) -> Result<(), String> {
        match field {
            Field::Protocol => self.protocol = Protocol::parse(v)?,
            Field::LocalIp => self.local_ip = Some(parse_ip_match(v)?),
            Field::RemoteIp => self.remote_ip = Some(parse_ip_match(v)?),
            Field::LocalPort => self.local_port = Some(parse_port_match(v)?),
            Field::RemotePort => self.remote_port = Some(parse_port_match(v)?),
        }
        Ok(())
    }

    /// This filter as a tcpdump expression; the empty string matches everything.
    /// `local` stands for the local addresses (any of them) when the filter
    /// has no `localIPAddress`.
    pub fn to_bpf(&self, local: &[IpMatch]) -> String {
        let proto = match self.protocol {
            Protocol::Tcp => Some("tcp"),
            Protocol::Udp => Some("udp"),
            Protocol::Any => None,
        };
        let directional = self.local_ip.is_some() || self.remote_ip.is_some() || self.local_port.is_some() || self.remote_port.is_some();
        if !directional {
            return proto.unwrap_or("").to_string();
        }
        let local_terms = |dir: &str| -> Option<String> {
            match &self.local_ip {
                Some(m) => Some(ip_expr(dir, m)),
                None if local.is_empty() => None,
                None if local.len() == 1 => Some(ip_expr(dir, &local[0])),
                None => Some(or_group(local.iter().map(|m| ip_expr(dir, m)).collect())),
            }
        };
        let side = |l: &str, r: &str| -> String {
            let terms: Vec<String> = [
                local_terms(l),
                self.remote_ip.as_ref().map(|m| ip_expr(r, m)),
                self.local_port.as_ref().map(|m| port_expr(l, m)),
                self.remote_port.as_ref().map(|m| port_expr(r, m)),
            ]
            .into_iter()
            .flatten()
            .collect();
            terms.join(" and ")
        };
        let out = side("src", "dst");
        let inn = side("dst", "src");
        let body = if out.is_empty() {
            String::new()
        } else {
            format!("(({out}) or ({inn}))")
        };
        match (proto, body.is_empty()) {
            (Some(p), false) => format!("{p} and {body}"),
            (Some(p), true) => p.to_string(),
            (None, _) => body,
        }
    }
}

/// Several filters (OR'd) and an optional raw expression (AND'd with them) as
/// one tcpdump expression; the empty string captures everything.
pub fn compile_bpf(filters: &[CaptureFilter], local: &[IpMatch], raw: Option<&str>) -> String {
    let exprs: Vec<String> = filters.iter().map(|f| f.to_bpf(local)).collect();
    let combined = if exprs.iter().any(|e| e.is_empty()) {
        // One filter matches everything: so does the OR.
        String::new()
    } else if exprs.len() == 1 {
        exprs[0].clone()
    } else {
        exprs.iter().map(|e| format!("({e})")).collect::<Vec<_>>().join(" or ")
    };
    let raw = raw.map(str::trim).filter(|r| !r.is_empty());
    match (combined.is_empty(), raw) {
        (true, None) => String::new(),
        (true, Some(r)) => r.to_string(),
        (false, None) => combined,
        (false, Some(r)) => format!("({combined}) and ({r})"),
    }
}

fn ip_expr(dir: &str, m: &IpMatch) -> String {
    let terms: Vec<String> = match m {
        IpMatch::Single(a) => vec![format!("{dir} host {a}")],
        IpMatch::List(v) => v.iter().map(|a| format!("{dir} host {a}")).collect(),
        IpMatch::Range(a, b) => range_to_cidrs(*a, *b)
            .into_iter()
            .map(|(net, len, full)| {
                if len == full {
                    format!("{dir} host {net}")
                } else {
                    format!("{dir} net {net}/{len}")
                }
            })
            .collect(),
    };
    or_group(terms)
}

fn port_expr(dir: &str, m: &PortMatch) -> String {
    let terms: Vec<String> = match m {
        PortMatch::Single(p) => vec![format!("{dir} port {p}")],
        PortMatch::Range(a, b) if a == b => vec![format!("{dir} port {a}")],
        PortMatch::Range(a, b) => vec![format!("{dir} portrange {a}-{b}")],
        PortMatch::List(v) => v.iter().map(|p| format!("{dir} port {p}")).collect(),
    };
    or_group(terms)
}

fn or_group(terms: Vec<String>) -> String {
    if terms.len() == 1 {
        terms.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", terms.join(" or "))
    }
}

/// The minimal list of CIDR blocks covering `a..=b` (same family, `a <= b`):
/// (network address, prefix length, address width).
pub fn range_to_cidrs(a: IpAddr, b: IpAddr) -> Vec<(IpAddr, u32, u32)> {
    let (start, end, bits, v4) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32u32, true),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32, false),
        _ => return Vec::new(),
    };
    let to_ip = |x: u128| -> IpAddr {
        if v4 {
            IpAddr::V4((x as u32).into())
        } else {
            IpAddr::V6(x.into())
        }
    };
    let mut out = Vec::new();
    if start > end {
        return out;
    }
    let mut cur = start;
    loop {
        let mut host_bits = cur.trailing_zeros().min(bits);
        let last = |h: u32| -> u128 {
            if h >= 128 {
                u128::MAX
            } else {
                cur | ((1u128 << h) - 1)
            }
        };
        while last(host_bits) > end {
            host_bits -= 1;
        }
        out.push((to_ip(cur), bits - host_bits, bits));
        let l = last(host_bits);
        if l >= end {
            break;
        }
        cur = l + 1;
    }
    out
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

fn parse_ip_match(v: &str) -> Result<IpMatch, String> {
    let v = v.trim();
    let bad = || format!("\"{v}\" is not an IP address, a range a-b or a list a;b;");
    if v.contains(';') {
        if v.contains('-') {
            return Err(format!("\"{v}\": ranges cannot be mixed with lists"));
        }
        let mut list = Vec::new();
        for item in v.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            list.push(parse_ip(item).ok_or_else(|| format!("\"{item}\" in the list \"{v}\" is not an IP address"))?);
        }
        if list.is_empty() {
            return Err(bad());
        }
        return Ok(IpMatch::List(list));
    }
    if let Some((a, b)) = v.split_once('-') {
        let (Some(x), Some(y)) = (parse_ip(a), parse_ip(b)) else {
            return Err(bad());
        };
        if x.is_ipv4() != y.is_ipv4() {
            return Err(format!("\"{v}\": a range needs two addresses of the same family"));
        }
        if x > y {
            return Err(format!("\"{v}\": the range starts after its end"));
        }
        return Ok(IpMatch::Range(x, y));
    }
    parse_ip(v).map(IpMatch::Single).ok_or_else(bad)
}

fn parse_port(s: &str) -> Option<u16> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_port_match(v: &str) -> Result<PortMatch, String> {
    let v = v.trim();
    let bad = || format!("\"{v}\" is not a port, a range a-b or a list a;b;");
    if v.contains(';') {
        if v.contains('-') {
            return Err(format!("\"{v}\": ranges cannot be mixed with lists"));
        }
        let mut list = Vec::new();
        for item in v.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            list.push(parse_port(item).ok_or_else(|| format!("\"{item}\" in the list \"{v}\" is not a port (0-65535)"))?);
        }
        if list.is_empty() {
            return Err(bad());
        }
        return Ok(PortMatch::List(list));
    }
    if let Some((a, b)) = v.split_once('-') {
        let (Some(x), Some(y)) = (parse_port(a), parse_port(b)) else {
            return Err(bad());
        };
        if x > y {
            return Err(format!("\"{v}\": the range starts after its end"));
        }
        return Ok(PortMatch::Range(x, y));
    }
    parse_port(v).map(PortMatch::Single).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn text_form_and_expression() {
        let f = CaptureFilter::parse("protocol=TCP,localIPAddress=10.0.0.3,remotePort=80").unwrap();
        assert_eq!(
            f.to_bpf(&[]),
            "tcp and ((src host 10.0.0.3 and dst port 80) or (dst host 10.0.0.3 and src port 80))"
        );
        let f = CaptureFilter::parse("LOCALIPADDRESS=10.0.0.3,RemotePort=80;443;").unwrap();
        assert_eq!(
            f.to_bpf(&[]),
            "((src host 10.0.0.3 and (dst port 80 or dst port 443)) or (dst host 10.0.0.3 and (src port 80 or src port 443)))"
        );
    }

    #[test]
    fn protocol_only_and_any() {
        assert_eq!(
            CaptureFilter::parse("protocol=UDP")
                .unwrap()
                .to_bpf(&[IpMatch::Single(ip("10.0.0.1"))]),
            "udp"
        );
        assert_eq!(CaptureFilter::parse("protocol=Any").unwrap().to_bpf(&[]), "");
        assert_eq!(CaptureFilter::parse("").unwrap().to_bpf(&[]), "");
    }

    #[test]
    fn interface_addresses_stand_for_local() {
        let f = CaptureFilter::parse("protocol=UDP,remotePort=53").unwrap();
        assert_eq!(
            f.to_bpf(&[IpMatch::Single(ip("10.0.0.4")), IpMatch::Single(ip("fe80::1"))]),
            "udp and (((src host 10.0.0.4 or src host fe80::1) and dst port 53) or ((dst host 10.0.0.4 or dst host fe80::1) and src port 53))"
        );
        assert_eq!(f.to_bpf(&[]), "udp and ((dst port 53) or (src port 53))");
    }

    #[test]
    fn ranges() {
        let f = CaptureFilter::parse("remoteIPAddress=10.0.0.1-10.0.0.6,localPort=8000-8080").unwrap();
        assert_eq!(
            f.to_bpf(&[IpMatch::Single(ip("10.1.0.4"))]),
            "((src host 10.1.0.4 and (dst host 10.0.0.1 or dst net 10.0.0.2/31 or dst net 10.0.0.4/31 or dst host 10.0.0.6) and src portrange 8000-8080) or (dst host 10.1.0.4 and (src host 10.0.0.1 or src net 10.0.0.2/31 or src net 10.0.0.4/31 or src host 10.0.0.6) and dst portrange 8000-8080))"
        );
    }

    #[test]
    fn cidr_split() {
        let c = |a: &str, b: &str| -> Vec<String> {
            range_to_cidrs(ip(a), ip(b))
                .into_iter()
                .map(|(n, l, _)| format!("{n}/{l}"))
                .collect()
        };
        assert_eq!(c("10.0.0.0", "10.0.0.255"), ["10.0.0.0/24"]);
        assert_eq!(c("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(
            c("127.0.0.1", "127.0.0.255"),
            [
                "127.0.0.1/32",
                "127.0.0.2/31",
                "127.0.0.4/30",
                "127.0.0.8/29",
                "127.0.0.16/28",
                "127.0.0.32/27",
                "127.0.0.64/26",
                "127.0.0.128/25"
            ]
        );
        assert_eq!(c("10.0.0.5", "10.0.0.5"), ["10.0.0.5/32"]);
        assert_eq!(c("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), ["::/0"]);
        assert_eq!(c("2001:db8::1", "2001:db8::2"), ["2001:db8::1/128", "2001:db8::2/128"]);
        assert_eq!(c("255.255.255.254", "255.255.255.255"), ["255.255.255.254/31"]);
    }

    #[test]
    fn several_filters_or_and_raw() {
        let a = CaptureFilter::parse("protocol=TCP,localIPAddress=10.0.0.3,remotePort=80").unwrap();
        let b = CaptureFilter::parse("protocol=UDP").unwrap();
        assert_eq!(
            compile_bpf(&[a.clone(), b.clone()], &[], Some("not port 22")),
            "((tcp and ((src host 10.0.0.3 and dst port 80) or (dst host 10.0.0.3 and src port 80))) or (udp)) and (not port 22)"
        );
        let any = CaptureFilter::parse("protocol=Any").unwrap();
        assert_eq!(compile_bpf(&[a, any], &[], None), "");
        assert_eq!(compile_bpf(&[], &[], Some("icmp")), "icmp");
        assert_eq!(compile_bpf(&[b], &[], Some("  ")), "udp");
    }

    #[test]
    fn errors_point_at_the_token() {
        let e = CaptureFilter::parse("localPort=80-").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"localPort=80-\": \"80-\" is not a port, a range a-b or a list a;b;"
        );
        let e = CaptureFilter::parse("protocol=TCP,localIPAddress=10.0.0.x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"localIPAddress=10.0.0.x\": \"10.0.0.x\" is not an IP address, a range a-b or a list a;b;"
        );
        let e = CaptureFilter::parse("port=80").unwrap_err();
        assert!(e.to_string().starts_with("\"port=80\": unknown field \"port\""), "{e}");
        let e = CaptureFilter::parse("protocol=ICMP").unwrap_err();
        assert_eq!(e.to_string(), "\"protocol=ICMP\": \"ICMP\" is not a protocol: TCP, UDP or Any");
        assert!(CaptureFilter::parse("localPort=80-85;90")
            .unwrap_err()
            .message
            .contains("cannot be mixed"));
        assert!(CaptureFilter::parse("localPort=90-80")
            .unwrap_err()
            .message
            .contains("starts after"));
        assert!(CaptureFilter::parse("localPort=65536").is_err());
        assert!(CaptureFilter::parse("localIPAddress=10.0.0.1-::1").is_err());
        assert!(CaptureFilter::parse("localPort").is_err());
        assert!(CaptureFilter::parse("localPort=1,localport=2").is_err());
        let e = CaptureFilter::from_fields(Some("TCP"), None, None, Some("x"), None).unwrap_err();
        assert_eq!(e.to_string(), "\"localPort\": \"x\" is not a port, a range a-b or a list a;b;");
    }
}
